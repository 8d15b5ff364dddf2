"""Arbitrary JSON bodies never produce a server error."""

import json
from typing import Any

from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)
keys = st.sampled_from(["0", "1", "2", "3", "sepal_length", "petal_width", "x"])
numbers = st.integers(-(10**40), 10**40) | st.floats(allow_nan=False, allow_infinity=False)
records = st.lists(st.dictionaries(keys, numbers | json_values, max_size=5), max_size=5)
tensors = st.fixed_dictionaries(
    {
        "name": st.text(max_size=5),
        "shape": st.lists(st.integers(-2, 5), max_size=3),
        "datatype": st.sampled_from(["FP32", "FP64", "INT8", "UINT64", "BYTES", "BOOL", "x"]),
        "data": st.lists(numbers | st.lists(numbers, max_size=5), max_size=12) | json_values,
    }
)
v2_bodies = st.fixed_dictionaries(
    {"inputs": st.lists(tensors, max_size=2)},
    optional={"id": json_values, "outputs": json_values, "parameters": json_values},
)
SLOW_OK = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def assert_client_error_or_success(response: Any) -> None:
    assert response.status_code < 500, response.get_data()
    assert response.is_json
    if response.status_code >= 400:
        assert isinstance(response.json["error"], str) and response.json["error"]


@SLOW_OK
@given(body=json_values | records)
def test_any_json_to_inference_is_never_a_5xx(client: FlaskClient, body: Any) -> None:
    response = client.post("/inference", data=json.dumps(body), content_type="application/json")
    assert_client_error_or_success(response)


@SLOW_OK
@given(body=json_values | v2_bodies)
def test_any_json_to_v2_infer_is_never_a_5xx(client: FlaskClient, body: Any) -> None:
    response = client.post(
        "/v2/models/iris/infer", data=json.dumps(body), content_type="application/json"
    )
    assert_client_error_or_success(response)


@SLOW_OK
@given(data=st.binary(max_size=200))
def test_any_bytes_are_never_a_5xx(client: FlaskClient, data: bytes) -> None:
    for url in ("/inference", "/v2/models/iris/infer"):
        assert_client_error_or_success(client.post(url, data=data, content_type="application/json"))
