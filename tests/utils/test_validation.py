import numpy as np
import pytest

from skrobust.utils._validation import check_bound


def test_check_bound_accepts_none_float_and_per_feature_arrays():
    assert check_bound(None, "clip_min", 3) is None
    assert check_bound(np.float32(0.5), "clip_min", 3) == 0.5
    assert type(check_bound(1, "clip_max", 3)) is float
    given = np.array([0.0, 1.0, 2.0], dtype=np.float32)
    bound = check_bound(given, "clip_max", 3)
    assert bound.dtype == np.float64 and np.array_equal(bound, given)
    bound[0] = 9.0
    assert given[0] == 0.0  # the caller's array is not the returned one


@pytest.mark.parametrize("value, message", [
    ("data", r'clip_min=.data. is not supported.*"data"'),
    (np.nan, "clip_min is NaN"),
    ([0.0, 1.0], r"clip_min has shape \(2,\); a per-feature bound needs shape \(3,\)"),
    ([0.0, np.nan, 1.0], "clip_min contains NaN"),
])
def test_check_bound_says_what_is_wrong(value, message):
    with pytest.raises(ValueError, match=message):
        check_bound(value, "clip_min", 3)
