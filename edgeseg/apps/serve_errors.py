"""One-line 400 answers from ``edgeseg serve`` for requests whose content cannot be served.

Triton core refuses requests malformed at the protocol level itself (unknown or missing input,
wrong datatype or shape): HTTP 400 / gRPC INVALID_ARGUMENT, one line (a body that is not JSON:
one line, but 500, as Triton core words its JSON parse errors as internal ones).
What only the model can see - an image that does not decode - is raised in the infer function,
and PyTriton 0.7 sends any exception from there to the client as the server's full traceback
with Triton's INTERNAL code (HTTP 500): its inference handler formats it with
``traceback.format_exception`` (``pytriton/proxy/inference.py``) and the proxy model that runs in
Triton's Python backend raises it as ``pb_utils.TritonModelException`` (``pytriton/proxy/model.py``,
``BatchResponsesHandler.handle_responses``), which carries no error code.

The Python backend can answer a request with ``pb_utils.TritonError(message, code)``, and
``TritonError.INVALID_ARG`` is HTTP 400 / gRPC INVALID_ARGUMENT. So:

* the infer function raises :class:`BadRequest`, whose message is one line behind :data:`MARK`;
* :func:`install_bad_request_answers` gives one bound model a proxy ``model.py`` whose error
  branch answers every request of that execution with ``TritonError(<the line after MARK>,
  INVALID_ARG)`` when the payload carries the mark, and raises the stock exception otherwise (any
  other failure stays an INTERNAL error, traceback included, exactly as before).

PyTriton's default lifecycle (the one ``edgeseg serve`` uses) loads each model through Triton's
model-load API with the files ``Model.get_proxy_model_files()`` returns
(``ModelManager._load_model``); that is the method :func:`install_bad_request_answers` wraps, on
the one model instance. When the expected source lines are not in the shipped ``model.py``
(another PyTriton version), or the models are written into a local model store instead, it logs a warning and leaves the stock file: bad images then
get PyTriton's 500 with a traceback, and ``tests/test_triton_server.py`` fails on it.
"""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("edgeseg")

#: prefix of a :class:`BadRequest` message; the patched proxy answers the text after it with a 400
MARK = "edgeseg-bad-request: "

#: the error branch of PyTriton 0.7's ``BatchResponsesHandler.handle_responses`` (non-decoupled models)
STOCK_ERROR_BRANCH = """\
                    triton_responses_or_error = pb_utils.TritonModelException(  # pytype: disable=module-attr
                        responses_payload.decode("utf-8")
                    )
"""
PATCHED_ERROR_BRANCH = """\
                    triton_responses_or_error = _edgeseg_answer(responses_payload.decode("utf-8"), triton_requests)
"""
ANSWER_FN = f'''

def _edgeseg_answer(payload, triton_requests):
    """Added by edgeseg (edgeseg/apps/serve_errors.py): a marked bad request -> INVALID_ARG (HTTP 400), one line."""
    marked = [line.split({MARK!r}, 1)[1].strip() for line in payload.splitlines() if {MARK!r} in line]
    if not marked:
        return pb_utils.TritonModelException(payload)  # pytype: disable=module-attr
    error = pb_utils.TritonError(marked[-1], pb_utils.TritonError.INVALID_ARG)  # pytype: disable=module-attr
    return [pb_utils.InferenceResponse(error=error) for _ in triton_requests]  # pytype: disable=module-attr
'''


class BadRequest(ValueError):
    """A request the model cannot serve because of what the client sent: HTTP 400 with this one line."""

    def __init__(self, message: str) -> None:
        self.line = " ".join(message.split())  # one line, whatever the message held
        super().__init__(MARK + self.line)


def patch_proxy_source(stock: str) -> str | None:
    """PyTriton's proxy ``model.py`` with the 400 branch; None when the expected lines are not there."""
    if stock.count(STOCK_ERROR_BRANCH) != 1 or "_edgeseg_answer" in stock:
        return None
    return stock.replace(STOCK_ERROR_BRANCH, PATCHED_ERROR_BRANCH) + ANSWER_FN


def install_bad_request_answers(triton: Any, model_name: str) -> bool:
    """Give the bound model ``model_name`` the patched proxy (call between ``bind`` and ``run``).

    False, with a warning, when it cannot: the model then keeps PyTriton's stock proxy.
    """
    manager = triton._model_manager  # noqa: SLF001 - PyTriton has no public hook for the proxy files
    model = next((m for m in manager.models if m.model_name == model_name), None)
    if model is None:
        raise RuntimeError(f"model {model_name} was not bound")
    why = ""
    if getattr(manager, "_model_store_path", None) is not None:
        why = "PyTriton writes this model into a local model store (the proxy files are copied, not sent)"
    stock_files = model.get_proxy_model_files
    key = f"file:{model.model_version}/model.py"
    files = stock_files() if not why else {}
    patched = patch_proxy_source(files[key].decode()) if key in files else None
    if patched is None:
        why = why or "PyTriton's proxy model.py does not have the expected error branch (another PyTriton version?)"
        log.warning("edgeseg serve: %s; bad requests (undecodable images, tensor sizes) on %s get PyTriton's "
                    "HTTP 500 with a traceback instead of a one-line 400", why, model_name)
        return False

    def proxy_files() -> dict[str, bytes]:
        out = stock_files()
        out[key] = patched.encode()
        return out

    model.get_proxy_model_files = proxy_files
    return True
