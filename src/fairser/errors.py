"""User errors: what went wrong, where, and how to fix it.

Every mistake a user can make (a bad manifest row, a config key, an unreadable file) is raised as a
:class:`UserError`. The command line prints it as one message and exits with code 2, without a traceback
(``fairser --debug`` shows it). Library callers catch it like any ``ValueError``.

Exit codes of the command line: 0 done; 1 some runs of a grid failed (a summary table names each run and its
error), or an unexpected error (a bug: its traceback is shown); 2 a user error (this module); 130 interrupted
(Ctrl-C).
"""

from __future__ import annotations


class UserError(ValueError):
    """A user's input is wrong.

    ``what`` says what is wrong, ``where`` names the place (``file:line``, a row id, a config key) and
    ``fix`` says how to put it right; ``str()`` joins them into one message.
    """

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text

    def __reduce__(self):  # keep what / where / fix across process-pool boundaries
        return (_rebuild, (type(self), self.what, self.where, self.fix), self.__dict__)


def _rebuild(cls: type[UserError], what: str, where: str | None, fix: str | None) -> UserError:
    error = cls.__new__(cls)
    UserError.__init__(error, what, where=where, fix=fix)
    return error
