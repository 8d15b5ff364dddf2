"""Domain errors. Each carries its HTTP status; one handler turns any of them into JSON.

InferenceError (500)
├── InvalidInput (400)          malformed JSON, wrong types or keys, bad tensors
├── Unauthorized (401)          missing or wrong API key
├── NotFound (404)              unknown model or version
├── LengthRequired (411)        a chunked body (its framing cannot be verified here)
├── PayloadTooLarge (413)       body or row count over the limit
├── UnsupportedMediaType (415)  body is not JSON
└── ModelNotReady (503)         no verified model loaded
"""


class InferenceError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(InferenceError):
    status = 400


class Unauthorized(InferenceError):
    status = 401


class NotFound(InferenceError):
    status = 404


class LengthRequired(InferenceError):
    status = 411


class PayloadTooLarge(InferenceError):
    status = 413


class UnsupportedMediaType(InferenceError):
    status = 415


class ModelNotReady(InferenceError):
    status = 503


class ArtifactError(Exception):
    """A model artifact is missing, incomplete or does not match its checksum."""
