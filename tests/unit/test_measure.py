from mlops.core.measure import (
    Measurements,
    bin_upper_ms,
    combine,
    count_above,
    latency_bin,
    prediction_key,
    quantile_ms,
)


def test_latency_bins_are_within_ten_percent() -> None:
    for ms in (0.07, 1.0, 3.3, 27.0, 480.0, 9_000.0):
        upper = bin_upper_ms(latency_bin(ms))
        assert ms <= upper <= ms * 1.1 + 1e-9


def test_quantiles_from_bins() -> None:
    bins: dict[int, int] = {}
    for ms in [1.0] * 90 + [10.0] * 9 + [100.0]:
        bins[latency_bin(ms)] = bins.get(latency_bin(ms), 0) + 1
    assert 1.0 <= (quantile_ms(bins, 0.5) or 0) <= 1.1
    assert 10.0 <= (quantile_ms(bins, 0.95) or 0) <= 11.0
    assert 100.0 <= (quantile_ms(bins, 1.0) or 0) <= 110.0
    assert quantile_ms({}, 0.5) is None
    assert count_above(bins, 5.0) == 10


def test_prediction_keys() -> None:
    assert prediction_key(1, "classification") == "1"
    assert prediction_key("fraud", "classification") == "fraud"
    assert prediction_key(0.0, "regression") == "0"
    assert prediction_key(123.4, "regression") == "100"
    assert prediction_key(-0.0567, "regression") == "-0.05"
    assert prediction_key(7e9, "regression") == "1e+06"
    assert prediction_key(1e-9, "unknown") == "0"
    assert prediction_key([1.0, 2.0], "transform") == "other"
    assert prediction_key("x" * 500, "classification") == "x" * 64


def test_regression_keys_are_few_whatever_the_values() -> None:
    import random

    rng = random.Random(3)
    keys = {
        prediction_key(rng.choice([-1, 1]) * 10 ** rng.uniform(-12, 30), "regression")
        for _ in range(20_000)
    }
    assert len(keys) <= 57


def test_combine_adds_workers_up() -> None:
    a = Measurements(
        "d", 3, requests=10, errors={"timeout": 1}, latency={5: 10}, predictions={"1": 9}
    )
    b = Measurements(
        "d", 3, requests=5, errors={"timeout": 1, "exception": 2}, latency={5: 2, 9: 3}
    )
    labels = Measurements("d", 3, labelled=4, correct=3)
    total = combine([a, b, labels])
    assert total is not None
    assert (total.requests, total.error_count, total.error_rate) == (15, 4, 4 / 15)
    assert total.latency == {5: 12, 9: 3}
    assert total.accuracy == 0.75
    assert total.to_dict()["errors"] == {
        "exception": 2,
        "timeout": 2,
        "invalid_output": 0,
        "rejected": 0,
    }
    assert combine([]) is None
