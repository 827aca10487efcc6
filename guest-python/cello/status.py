"""HTTP status codes by name, as FastAPI's and Starlette's ``status``:
``status.HTTP_201_CREATED``, ``status.HTTP_404_NOT_FOUND``, ...

    from cello import status

    @app.post("/items", status_code=status.HTTP_201_CREATED)
"""

from http import HTTPStatus

# Every name the running Python knows, aliases included, so both the old
# (HTTP_422_UNPROCESSABLE_ENTITY) and new (..._CONTENT) spellings work.
for _name, _status in HTTPStatus.__members__.items():
    globals()[f"HTTP_{_status.value}_{_name}"] = _status.value

# Names Starlette has that some Python versions spell otherwise.
HTTP_413_REQUEST_ENTITY_TOO_LARGE = 413
HTTP_414_REQUEST_URI_TOO_LONG = 414
HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE = 416
HTTP_418_IM_A_TEAPOT = 418
HTTP_422_UNPROCESSABLE_ENTITY = 422
HTTP_422_UNPROCESSABLE_CONTENT = 422
HTTP_413_CONTENT_TOO_LARGE = 413
HTTP_416_RANGE_NOT_SATISFIABLE = 416

WS_1000_NORMAL_CLOSURE = 1000
WS_1008_POLICY_VIOLATION = 1008
WS_1011_INTERNAL_ERROR = 1011

del _name, _status
