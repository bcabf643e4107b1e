"""The base class of every TARS actor: instrumented mailbox, bound log context, exit links.

pykka has no links or monitors. A supervisor needs to know when a child stops and why,
including when ``on_start`` raises (pykka then calls neither ``on_failure`` nor
``on_stop``). :class:`TarsActor` reports every way a thread can end to the
:class:`ExitLink` it was started under, and tells whoever starts it synchronously whether
``on_start`` succeeded.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar

import pykka
import structlog

from tars_actors.runtime.mailbox import Mailbox

__all__ = [
    "ActorExit",
    "ExitLink",
    "ExitReason",
    "TarsActor",
    "linked",
    "teller",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitReason:
    """Why an actor's thread ended.

    ``kind`` follows OTP: ``normal`` (stopped on purpose), ``shutdown`` (stopped by its
    supervisor), or ``error`` (an exception; ``phase`` says whether it was raised in
    ``on_start``, while handling a message, or in ``on_stop``/``on_failure``).
    """

    kind: str
    phase: str = "running"
    error: str | None = None

    @property
    def abnormal(self) -> bool:
        return self.kind == "error"

    def __str__(self) -> str:
        if self.kind != "error":
            return self.kind
        return f"{self.phase}: {self.error}"


NORMAL = ExitReason(kind="normal")
SHUTDOWN = ExitReason(kind="shutdown")


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorExit:
    """Sent to the linked watcher when a linked actor's thread ends."""

    child_id: str
    actor_urn: str
    reason: ExitReason


class ExitLink:
    """Connects one actor instance to whoever watches it (normally its supervisor).

    ``started`` is set once ``on_start`` has returned or failed; ``start_error`` holds the
    failure. ``on_exit`` runs on the actor's own thread as the thread ends.
    """

    def __init__(self, child_id: str, on_exit: Callable[[ActorExit], None]) -> None:
        self.child_id = child_id
        self.on_exit = on_exit
        self.settled = threading.Event()
        self.start_error: ExitReason | None = None
        #: Set by the supervisor before it stops the child, so the exit counts as shutdown.
        self.stopping = False

    def wait_started(self, timeout: float) -> ExitReason | None:
        """Wait for ``on_start`` to finish; None on success, else why it failed."""
        if not self.settled.wait(timeout):
            return ExitReason(
                kind="error", phase="start", error=f"on_start did not finish in {timeout:g}s"
            )
        return self.start_error


_pending_link: contextvars.ContextVar[ExitLink | None] = contextvars.ContextVar(
    "tars_pending_link", default=None
)


@contextlib.contextmanager
def linked(link: ExitLink) -> Iterator[None]:
    """Make the next :class:`TarsActor` constructed in this thread adopt ``link``.

    Child specs are plain callables returning an ``ActorRef`` (``Router.start``...); this
    lets a supervisor attach its link without every actor taking a link argument.
    """
    token = _pending_link.set(link)
    try:
        yield
    finally:
        _pending_link.reset(token)


class TarsActor(pykka.ThreadingActor):
    """A pykka threading actor with an instrumented mailbox and a bound log context.

    Subclasses override :meth:`log_context` to add their own fields (session name, call
    SID); they are bound on the actor's own thread before ``on_start`` runs, so every line
    the actor writes, pykka's crash reports included, carries them.
    """

    #: The actor kind as it appears in logs and stats; defaults to the class name.
    actor_kind: ClassVar[str] = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._exit_link = _pending_link.get()
        # One link adopts exactly one actor, even if this constructor builds others.
        _pending_link.set(None)
        self._exit_reason: ExitReason | None = None
        self._in_start = False

    @staticmethod
    def _create_actor_inbox() -> Mailbox:
        return Mailbox()

    @property
    def kind(self) -> str:
        return self.actor_kind or type(self).__name__

    @property
    def actor_id(self) -> str:
        """Stable id: the child id under a supervisor, else the short actor URN."""
        if self._exit_link is not None:
            return self._exit_link.child_id
        return self.actor_urn.rsplit(":", 1)[-1][:8]

    def log_context(self) -> dict[str, Any]:
        """Fields bound to every log line written on this actor's thread."""
        return {"actor": self.kind, "actor_id": self.actor_id}

    def bind_log(self, **fields: Any) -> None:
        """Add fields to this actor's log context. Call on the actor's own thread."""
        structlog.contextvars.bind_contextvars(**fields)
        mailbox = self.actor_inbox
        if isinstance(mailbox, Mailbox):
            mailbox.labels = {**mailbox.labels, **fields}

    # pykka runs this method as the thread's target. It is overridden (not a public
    # hook) because pykka offers no way to learn that on_start failed, and a supervisor
    # must treat that as a failed start.
    def _actor_loop(self) -> None:
        structlog.contextvars.clear_contextvars()
        self.bind_log(**self.log_context())
        try:
            self._in_start = True
            self._actor_loop_setup()
            self._in_start = False
            link = self._exit_link
            if link is not None:
                link.start_error = self._exit_reason
                link.settled.set()
            self._actor_loop_running()
            self._actor_loop_teardown()
        finally:
            self._report_exit()

    def _handle_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._exit_reason is None:
            if self._in_start:
                phase = "start"
            elif self.actor_stopped.is_set():
                phase = "stop"
            else:
                phase = "running"
            self._exit_reason = ExitReason(
                kind="error",
                phase=phase,
                error=f"{getattr(exception_type, '__name__', 'Exception')}: {exception_value}",
            )
        super()._handle_failure(exception_type, exception_value, traceback)

    def _report_exit(self) -> None:
        link = self._exit_link
        if link is None:
            return
        reason = self._exit_reason
        if reason is None:
            reason = SHUTDOWN if link.stopping else NORMAL
        if not link.settled.is_set():
            link.start_error = reason if reason.abnormal else None
            link.settled.set()
        try:
            link.on_exit(ActorExit(child_id=link.child_id, actor_urn=self.actor_urn, reason=reason))
        except Exception:  # noqa: BLE001 (the watcher is gone; nothing is left to tell)
            structlog.get_logger("tars.actor").warning(
                "actor.exit_unreported", exc_info=sys.exc_info()
            )


def teller(ref: pykka.ActorRef[Any], message: object) -> Callable[[], None]:
    """A callback (a timer's, another thread's) that tells ``ref`` ``message`` and ignores
    an actor that has stopped meanwhile."""

    def tell() -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            ref.tell(message)

    return tell


def tell_live(lookup: Callable[[], pykka.ActorRef[Any] | None], message: object) -> bool:
    """Tell the actor ``lookup`` finds now (a permanent child restarted is a new one);
    False when none is running or it stopped meanwhile."""
    ref = lookup()
    if ref is None:
        return False
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        return False
    return True
