"""Injected faults: :class:`Fault`, its compact spec syntax, and when and how one fires.

A fault is armed (:class:`Armed`) with the request count of its kind at the moment it is added,
and answers (:func:`fault_answer`) before or after the request is processed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, cast, get_args

from .answers import Answer, base_headers, error_answer, is_number, show

#: A ``slow`` fault sleeps at most this long.
MAX_SLOW_SECONDS: Final = 30.0
DEFAULT_FAIL_REASON: Final = "injected failure"
MALFORMED_BODY: Final = b'{"task_id": "tsk_'

FaultKind = Literal["create", "get", "any"]
FaultAction = Literal["status", "drop", "drop_after_store", "slow", "malformed_json", "fail_task"]
FAULT_KINDS: Final[tuple[str, ...]] = get_args(FaultKind)
FAULT_ACTIONS: Final[tuple[str, ...]] = get_args(FaultAction)
#: The actions that can fire after the request was processed, and the spec option that says so.
AFTER_STORE_ACTIONS: Final = ("status", "malformed_json")
AFTER_STORE_OPTION: Final = "after_store"
FAULT_EXAMPLES: Final = (
    "create:1:status=503, get:2:status=429,retry_after=1, create:1:drop, "
    "create:1:drop_after_store, create:1:status=504,after_store, "
    "create:1:malformed_json,after_store, any:3:slow=2.5, get:1:malformed_json, "
    "create:1:fail_task=reason text, create:2+:status=500"
)


@dataclass(frozen=True)
class Fault:
    """One injected fault: ``action`` on the ``nth`` request of kind ``on`` (1-based).

    Requests are counted per kind (``create``, ``get``, or ``any`` of the two) from the moment
    the fault is added; with ``every`` it fires on the ``nth`` and every later one.

    Actions: ``status`` answers ``status`` with the error envelope (and ``Retry-After`` when
    ``retry_after`` is set); ``drop`` closes the connection before the request is processed;
    ``drop_after_store`` processes it (a create stores its task), then closes the connection
    unanswered; ``slow`` sleeps ``seconds`` before processing; ``malformed_json`` answers 200 with
    a body that is not JSON, without processing; ``fail_task`` makes the created or polled task
    end ``failed`` with ``reason``. With ``after_store``, ``status`` and ``malformed_json``
    process the request first (a create stores its task, a poll advances it), then answer with
    the fault instead of the task.

    Raises:
        ValueError: a field is out of range or does not go with the action.
    """

    on: FaultKind
    nth: int
    action: FaultAction
    status: int = 500
    retry_after: str | None = None
    seconds: float = 0
    reason: str = ""
    every: bool = False
    after_store: bool = False

    def __post_init__(self) -> None:
        if self.on not in FAULT_KINDS:
            raise ValueError(f"fault 'on' must be one of {', '.join(FAULT_KINDS)}, not {self.on!r}")
        if isinstance(self.nth, bool) or not isinstance(self.nth, int) or self.nth < 1:
            raise ValueError(f"fault 'nth' must be a whole number from 1, not {self.nth!r}")
        if self.action not in FAULT_ACTIONS:
            raise ValueError(
                f"fault action must be one of {', '.join(FAULT_ACTIONS)}, not {self.action!r}"
            )
        if isinstance(self.status, bool) or not isinstance(self.status, int):
            raise ValueError(f"fault 'status' must be an integer, not {self.status!r}")
        if self.action == "status" and not 400 <= self.status <= 599:
            raise ValueError(f"fault status must be an error status (400-599), not {self.status}")
        if self.retry_after is not None and (
            self.action != "status" or not isinstance(self.retry_after, str)
        ):
            raise ValueError("fault 'retry_after' is a string and goes only with the status action")
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, (int, float)):
            raise ValueError(f"fault 'seconds' must be a number, not {self.seconds!r}")
        if self.action == "slow" and not 0 < self.seconds <= MAX_SLOW_SECONDS:
            raise ValueError(
                f"a slow fault sleeps more than 0 and at most {MAX_SLOW_SECONDS:g} seconds, "
                f"not {self.seconds!r}"
            )
        if not isinstance(self.reason, str) or not isinstance(self.every, bool):
            raise ValueError("fault 'reason' must be a string and 'every' a boolean")
        if not isinstance(self.after_store, bool):
            raise ValueError(f"fault 'after_store' must be a boolean, not {self.after_store!r}")
        if self.after_store and self.action not in AFTER_STORE_ACTIONS:
            raise ValueError(
                f"fault 'after_store' goes only with {' and '.join(AFTER_STORE_ACTIONS)}"
            )

    @classmethod
    def parse(cls, text: str) -> Fault:
        """Read a compact spec ``ON:NTH[+]:ACTION[=VALUE][,retry_after=VALUE][,after_store]``.

        ``NTH+`` fires on the nth request and every later one. Examples: ``create:1:status=503``,
        ``get:2:status=429,retry_after=1``, ``create:1:drop_after_store``, ``any:3:slow=2.5``,
        ``get:1:malformed_json``, ``create:1:status=504,after_store``,
        ``create:1:malformed_json,after_store``, ``create:1:fail_task=reason text`` (the reason
        runs to the end).

        Raises:
            ValueError: the text is not a fault spec; the message says why and shows the form.
        """
        try:
            return cls._parse(text)
        except ValueError as exc:
            raise ValueError(
                f"bad fault {text!r}: {exc}; expected ON:NTH[+]:ACTION[=VALUE], "
                f"e.g. {FAULT_EXAMPLES}"
            ) from None

    @classmethod
    def _parse(cls, text: str) -> Fault:
        parts = [part.strip() for part in text.strip().split(":", 2)]
        if len(parts) != 3:
            raise ValueError("it needs three parts separated by ':'")
        on, nth_text, rest = parts
        if on not in FAULT_KINDS:
            raise ValueError(f"ON must be one of {', '.join(FAULT_KINDS)}")
        every = nth_text.endswith("+")
        digits = nth_text.removesuffix("+")
        if not is_number(digits):
            raise ValueError("NTH must be a whole number from 1, optionally followed by '+'")
        nth = int(digits)
        kind = cast(FaultKind, on)
        if rest.startswith("fail_task"):
            action, has_value, reason = rest.partition("=")
            if action != "fail_task":
                raise ValueError(f"unknown action {action!r}")
            reason = reason.strip() if has_value else ""
            return cls(kind, nth, "fail_task", reason=reason or DEFAULT_FAIL_REASON, every=every)
        head, after_mark, after = rest.rpartition(",")
        after_store = bool(after_mark) and after.strip() == AFTER_STORE_OPTION
        if after_store:
            rest = head.strip()
        head, has_option, option = (part.strip() for part in rest.partition(","))
        action, has_value, value = (part.strip() for part in head.partition("="))
        if action == "status":
            if not is_number(value):
                raise ValueError("status needs a number, e.g. status=503")
            retry_after = None
            if has_option:
                # The value runs to the end: an HTTP date holds a comma.
                name, _, retry_after = (part.strip() for part in option.partition("="))
                if name != "retry_after" or not retry_after:
                    raise ValueError(f"unknown option {option!r}; status takes retry_after=VALUE")
            return cls(
                kind,
                nth,
                "status",
                status=int(value),
                retry_after=retry_after,
                every=every,
                after_store=after_store,
            )
        if has_option:
            raise ValueError(f"{action} takes no options")
        if action == "slow":
            try:
                seconds = float(value)
            except ValueError:
                raise ValueError("slow needs seconds, e.g. slow=2.5") from None
            return cls(kind, nth, "slow", seconds=seconds, every=every, after_store=after_store)
        if action in ("drop", "drop_after_store", "malformed_json"):
            if has_value:
                raise ValueError(f"{action} takes no value")
            return cls(kind, nth, cast(FaultAction, action), every=every, after_store=after_store)
        raise ValueError(f"unknown action {action!r}; one of {', '.join(FAULT_ACTIONS)}")

    def to_spec(self) -> str:
        """The fault as the compact text :meth:`parse` reads."""
        nth = f"{self.nth}+" if self.every else str(self.nth)
        action: str = self.action
        if self.action == "status":
            action = f"status={self.status}"
            if self.retry_after is not None:
                action += f",retry_after={self.retry_after}"
        elif self.action == "slow":
            action = f"slow={self.seconds:g}"
        elif self.action == "fail_task" and self.reason:
            action = f"fail_task={self.reason}"
        if self.after_store:
            action += f",{AFTER_STORE_OPTION}"
        return f"{self.on}:{nth}:{action}"

    @classmethod
    def from_json(cls, value: object) -> Fault:
        """Build a fault from a spec string or an object with the fields (the admin endpoint).

        Raises:
            ValueError: the value is not a fault.
        """
        if isinstance(value, str):
            return cls.parse(value)
        if not isinstance(value, dict):
            raise ValueError(f"a fault is a spec string or an object, not {show(value)}")
        try:
            return cls(**value)
        except TypeError as exc:
            raise ValueError(f"bad fault {show(value)}: {exc}") from None


@dataclass(frozen=True)
class Armed:
    """A fault and the request count of its kind when it was added."""

    fault: Fault
    base: int

    def fires(self, kind: str, counts: Mapping[str, int]) -> bool:
        """Whether the fault fires on this request of ``kind``, given the counts with it."""
        if self.fault.on not in (kind, "any"):
            return False
        nth = counts[self.fault.on] - self.base
        return nth == self.fault.nth or (self.fault.every and nth >= self.fault.nth)


def fault_answer(fault: Fault, request_id: str, *, stored: bool) -> Answer | None:
    """The answer ``fault`` puts in place of the real one, before or after the request was
    processed (``stored``); None when it does not answer at that point."""
    if stored != (fault.after_store or fault.action == "drop_after_store"):
        return None
    if fault.action == "status":
        retry = (("Retry-After", fault.retry_after),) if fault.retry_after else ()
        return error_answer(
            fault.status, f"sandbox fault {fault.to_spec()}", request_id, headers=retry
        )
    if fault.action in ("drop", "drop_after_store"):
        return Answer(0, drop=True)
    if fault.action == "malformed_json":
        return Answer(200, MALFORMED_BODY, base_headers(request_id))
    return None
