import types

import mlops
from mlops import errors


def test_public_api_is_what_all_says() -> None:
    public = {
        name
        for name in dir(mlops)
        if not name.startswith("_") and not isinstance(getattr(mlops, name), types.ModuleType)
    }
    assert public == set(mlops.__all__) - {"__version__"}


def test_every_error_carries_an_exit_code_and_status() -> None:
    codes = {
        errors.NotFound: (3, 404),
        errors.NoRollbackTarget: (3, 404),
        errors.SnapshotMissing: (3, 404),
        errors.Conflict: (4, 409),
        errors.Quarantined: (4, 409),
        errors.ConcurrentUpdate: (4, 409),
        errors.LeaseLost: (4, 409),
        errors.InvalidInput: (5, 400),
        errors.BadReference: (5, 400),
        errors.UnreadableFile: (5, 400),
        errors.WrongFlavor: (5, 400),
        errors.IntegrityError: (5, 400),
        errors.UntrustedArtifact: (5, 400),
        errors.SnapshotCorrupt: (5, 400),
        errors.UnsupportedResource: (5, 400),
        errors.DependencyFailed: (6, 503),
        errors.StoreUnavailable: (6, 503),
        errors.SnapshotFailed: (6, 503),
        errors.RestoreFailed: (6, 503),
        errors.SnapshotDeleteFailed: (6, 503),
        errors.NotPlainFolder: (5, 400),
        errors.DocumentRefused: (5, 400),
        errors.NotADocument: (5, 400),
        errors.MigrationFailed: (5, 400),
        errors.PayloadError: (5, 400),
        errors.UnknownKey: (5, 422),
        errors.FeaturesMissing: (5, 422),
        errors.BadKey: (5, 400),
        errors.InvalidKey: (5, 400),
        errors.DeliveryFailed: (6, 503),
        errors.LookupFailed: (6, 503),
        errors.Overloaded: (6, 503),
        errors.RemoteFailed: (6, 502),
        errors.RemoteTimedOut: (6, 504),
        errors.AccessDenied: (7, 403),
        errors.Unauthenticated: (7, 401),
        errors.TooManyAttempts: (7, 429),
        errors.Forbidden: (7, 403),
    }
    for cls, (exit_code, status) in codes.items():
        assert (cls.exit_code, cls.http_status) == (exit_code, status), cls
    assert set(codes) | {errors.MlopsError} == {getattr(errors, n) for n in errors.__all__}


def test_the_whole_error_tree_is_exported_from_mlops() -> None:
    assert set(errors.__all__) <= set(mlops.__all__)
    for name in errors.__all__:
        assert getattr(mlops, name) is getattr(errors, name)
