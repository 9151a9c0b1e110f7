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
    }
    for cls, (exit_code, status) in codes.items():
        assert (cls.exit_code, cls.http_status) == (exit_code, status), cls
    assert set(codes) | {errors.MlopsError} == {getattr(errors, n) for n in errors.__all__}
