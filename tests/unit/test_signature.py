from mlops.core.signature import Signature, TensorSpec


def test_signature_round_trips_through_its_dict() -> None:
    sig = Signature(
        inputs=(TensorSpec("input", "float64", (-1, 3)),),
        outputs=(TensorSpec("predict", "object"),),
        features=(TensorSpec("a", "float64"), TensorSpec("b", "int64"), TensorSpec("c", "string")),
        output_kind="classification",
        classes=(0, 1),
        example=((1.0, 2, "x"),),
    )
    assert Signature.from_dict(sig.to_dict()) == sig
    assert sig.n_features == 3
    assert sig.describe() == "3 features [float64, int64, string] -> classification (2 classes)"


def test_feature_count_from_a_tensor_shape() -> None:
    assert Signature(inputs=(TensorSpec("x", "float32", (-1, 20)),)).n_features == 20
    assert Signature(inputs=(TensorSpec("x", "float32", (-1, -1)),)).n_features is None
