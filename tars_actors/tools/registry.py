"""The tool registry: declarations for the model, argument validation, permission checks.

A tool is declared once (:class:`ToolSpec`) and serves both ends: the model's function
declarations for a permission level, and the checks a function call must pass before its
handler runs. A call that fails a check gets an error result and runs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from google.genai import types

from tars_actors.call.permissions import Permission, allowed_tools

__all__ = [
    "Param",
    "PreparedCall",
    "ToolContext",
    "ToolError",
    "ToolHandler",
    "ToolOutcome",
    "ToolRegistry",
    "ToolSpec",
]

ParamType = Literal["string", "integer", "number", "boolean"]

_SCHEMA_TYPES = {
    "string": types.Type.STRING,
    "integer": types.Type.INTEGER,
    "number": types.Type.NUMBER,
    "boolean": types.Type.BOOLEAN,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Param:
    """One argument of a tool: its JSON type and the limits it is checked against."""

    type: ParamType
    description: str
    required: bool = True
    enum: tuple[str, ...] | None = None
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None

    def check(self, name: str, value: Any) -> tuple[Any, str | None]:
        """The value converted to its type, or an error naming the argument."""
        match self.type:
            case "string":
                if not isinstance(value, str):
                    return None, f"argument '{name}' must be a string"
                value = value.strip()
                if self.required and not value:
                    return None, f"argument '{name}' must not be empty"
                if self.max_length is not None and len(value) > self.max_length:
                    return None, (
                        f"argument '{name}' is too long ({len(value)} characters, "
                        f"at most {self.max_length})"
                    )
                if self.enum is not None and value not in self.enum:
                    return None, f"argument '{name}' must be one of {', '.join(self.enum)}"
                return value, None
            case "boolean":
                if not isinstance(value, bool):
                    return None, f"argument '{name}' must be true or false"
                return value, None
            case "integer" | "number":
                # Models send JSON numbers; 3.0 for an integer is fine, "3" or true is not.
                if isinstance(value, bool) or not isinstance(value, int | float):
                    return None, f"argument '{name}' must be a number"
                if not math.isfinite(value):
                    return None, f"argument '{name}' must be a finite number"
                if self.type == "integer":
                    if value != int(value):
                        return None, f"argument '{name}' must be a whole number"
                    value = int(value)
                if self.minimum is not None and value < self.minimum:
                    return None, f"argument '{name}' must be at least {self.minimum:g}"
                if self.maximum is not None and value > self.maximum:
                    return None, f"argument '{name}' must be at most {self.maximum:g}"
                return value, None
        return None, f"argument '{name}' has an unsupported type"  # pragma: no cover

    def schema(self) -> types.Schema:
        return types.Schema(
            type=_SCHEMA_TYPES[self.type],
            description=self.description,
            enum=list(self.enum) if self.enum else None,
            max_length=self.max_length if self.type == "string" else None,
            minimum=self.minimum,
            maximum=self.maximum,
        )


class ToolContext(Protocol):
    """What a handler may know and use about the session that called it.

    Implemented by the call session; handlers run on the session's thread, or on a tool
    worker thread for slow tools, so everything reachable here must be thread-safe.
    """

    @property
    def session_id(self) -> int: ...

    @property
    def session_name(self) -> str: ...

    @property
    def permission(self) -> Permission: ...

    @property
    def caller_number(self) -> str: ...

    @property
    def call_sid(self) -> str: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolOutcome:
    """A handler's result: the response for the model, and what the session should do."""

    response: Mapping[str, Any]
    #: Asks the session to end the call once the model's goodbye has been heard.
    end_call: bool = False
    #: Keys to press on the line (DTMF tones to the other party), e.g. through a phone menu.
    keys: str | None = None


ToolHandler = Callable[[ToolContext, Mapping[str, Any]], ToolOutcome]


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolSpec:
    name: str
    description: str
    handler: ToolHandler
    params: Mapping[str, Param] = field(default_factory=dict)
    #: Slow tools (database scans, REST calls, text-model requests) run on a worker
    #: thread so the call's audio never waits for them.
    slow: bool = False

    def declaration(self) -> types.FunctionDeclaration:
        if not self.params:
            return types.FunctionDeclaration(name=self.name, description=self.description)
        return types.FunctionDeclaration(
            name=self.name,
            description=self.description,
            parameters=types.Schema(
                type=types.Type.OBJECT,
                properties={name: p.schema() for name, p in self.params.items()},
                required=[name for name, p in self.params.items() if p.required],
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolError:
    """A function call refused before its handler ran."""

    call_id: str
    name: str
    #: "unknown_tool", "not_permitted" or "bad_arguments".
    kind: str
    message: str

    def response(self) -> dict[str, Any]:
        return {"error": self.message}

    def log_fields(self) -> dict[str, Any]:
        """The fields of its ``tool.refused`` line."""
        return {
            "tool": self.name,
            "call_id": self.call_id,
            "kind": self.kind,
            "error": self.message,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedCall:
    """A function call that passed every check, with its arguments converted."""

    call_id: str
    spec: ToolSpec
    args: Mapping[str, Any]

    @property
    def name(self) -> str:
        return self.spec.name

    def run(self, context: ToolContext) -> ToolOutcome:
        return self.spec.handler(context, self.args)


class ToolRegistry:
    """Every tool TARS has; immutable once built, shared by all sessions."""

    def __init__(self, specs: Iterable[ToolSpec] = ()) -> None:
        self._specs: dict[str, ToolSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"tool {spec.name!r} is declared twice")
            self._specs[spec.name] = spec

    def names(self) -> frozenset[str]:
        return frozenset(self._specs)

    def for_level(self, level: Permission) -> list[ToolSpec]:
        allowed = allowed_tools(level)
        return [spec for name, spec in sorted(self._specs.items()) if name in allowed]

    def declarations(self, level: Permission) -> tuple[types.FunctionDeclaration, ...]:
        return tuple(spec.declaration() for spec in self.for_level(level))

    def prepare(
        self, *, call_id: str, name: str, args: Mapping[str, Any] | None, level: Permission
    ) -> PreparedCall | ToolError:
        """Check a function call from the model against the registry and the level."""
        spec = self._specs.get(name)
        if spec is None:
            return ToolError(
                call_id=call_id, name=name, kind="unknown_tool", message=f"no tool named {name!r}"
            )
        if name not in allowed_tools(level):
            return ToolError(
                call_id=call_id,
                name=name,
                kind="not_permitted",
                message=f"the tool {name!r} is not available to this caller",
            )
        given = dict(args or {})
        unknown = sorted(set(given) - set(spec.params))
        if unknown:
            return ToolError(
                call_id=call_id,
                name=name,
                kind="bad_arguments",
                message=f"unknown argument(s) for {name}: {', '.join(unknown)}",
            )
        converted: dict[str, Any] = {}
        problems: list[str] = []
        for param_name, param in spec.params.items():
            if param_name not in given or given[param_name] is None:
                if param.required:
                    problems.append(f"argument '{param_name}' is required")
                continue
            value, problem = param.check(param_name, given[param_name])
            if problem is not None:
                problems.append(problem)
            elif not param.required and value == "":
                continue
            else:
                converted[param_name] = value
        if problems:
            return ToolError(
                call_id=call_id, name=name, kind="bad_arguments", message="; ".join(problems)
            )
        return PreparedCall(call_id=call_id, spec=spec, args=converted)
