"""One log line per rejected request, at WARNING, instead of BentoML's ERROR with a full traceback.

BentoML logs every 400 it answers for a pydantic ValidationError as `logger.error("Exception on ...",
exc_info=True)`: one request with 1,000 bad fields wrote about 4,000 lines at ERROR, burying real errors. A
filter on that logger turns such a record into one WARNING line saying how many problems and where the first
is: its field path and its kind (`greater_than_equal`, `duplicate_account_id`), never its message, which may quote
the client's values (an account id that appears twice). Every other record passes untouched.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

BENTOML_HTTP_LOGGER = "bentoml._internal.server.http_app"


class RejectedRequestsOnOneLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, ValidationError):
            return True
        path, method = (record.args + ("", ""))[:2] if isinstance(record.args, tuple) else ("", "")
        problems = error.errors(include_url=False, include_input=False, include_context=False)
        first = problems[0] if problems else {"loc": (), "type": ""}
        where = ".".join(str(part) for part in first["loc"]) or "body"
        record.msg = "400 %s %s: %d problem(s) in the request; first at %s: %s"
        record.args = (method, path, len(problems), where, first["type"])
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


_FILTER = RejectedRequestsOnOneLine()


def log_rejections_on_one_line() -> None:
    """Install the filter (idempotent); called when the service starts, after BentoML has configured logging."""
    logger = logging.getLogger(BENTOML_HTTP_LOGGER)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
