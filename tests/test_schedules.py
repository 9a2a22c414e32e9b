import pytest

from repro.pruning.schedules import SCHEDULES, sparsity_at


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize(("s_i", "s_f"), [(0.0, 0.9), (0.2, 0.98), (0.0, 0.5)])
def test_endpoints_monotone_and_exact_final(name, s_i, s_f):
    values = [sparsity_at(name, k / 100, s_i, s_f) for k in range(101)]
    assert values[-1] == s_f  # exact, not approximately
    if name != "constant":
        assert values[0] == pytest.approx(s_i)
    assert all(b >= a - 1e-12 for a, b in zip(values, values[1:]))
    assert all(s_i - 1e-12 <= v <= s_f + 1e-12 for v in values)


def test_linear_is_linear_and_cubic_front_loads():
    assert sparsity_at("linear", 0.5, 0.0, 0.8) == pytest.approx(0.4)
    assert sparsity_at("cubic", 0.5, 0.0, 0.8) == pytest.approx(0.8 - 0.8 * 0.125)
    # exponential: survivors shrink by the same factor per unit of t
    d = [1 - sparsity_at("exponential", t, 0.0, 0.99) for t in (0.0, 0.5, 1.0)]
    assert d[1] / d[0] == pytest.approx(d[2] / d[1])


def test_progress_is_clamped():
    assert sparsity_at("linear", -1.0, 0.1, 0.9) == pytest.approx(0.1)
    assert sparsity_at("linear", 2.0, 0.1, 0.9) == 0.9


def test_unknown_schedule():
    with pytest.raises(ValueError, match="linear"):
        sparsity_at("sigmoid", 0.5, 0.0, 0.9)
