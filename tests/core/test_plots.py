"""core.plots: the figure helpers issue 20 item 11 relies on (log-2 J axis, signed/missing bars, heatmap)."""

import numpy as np
import pytest

from jaxlab.core import plots


def _axes_of_saved(monkeypatch):
    saved = {}

    def fake_save(fig, path):
        saved["fig"] = fig
        return path
    monkeypatch.setattr(plots, "_save", fake_save)
    return saved


def test_curves_logx_puts_a_tick_on_every_doubling(monkeypatch, tmp_path):
    saved = _axes_of_saved(monkeypatch)
    js = [1, 2, 4, 8, 16]
    plots.curves(str(tmp_path / "c.png"), js, {"a": np.ones((3, 5))}, xlabel="J", ylabel="e", logx=True)
    ax = saved["fig"].axes[0]
    assert ax.get_xscale() == "log"
    np.testing.assert_allclose(ax.get_xticks(), js)
    with pytest.raises(ValueError, match="logx"):
        plots.curves(str(tmp_path / "c.png"), [0, 1], {"a": np.ones(2)}, xlabel="J", ylabel="e", logx=True)


def test_grouped_bars_leave_out_missing_means_and_apply_styles(monkeypatch, tmp_path):
    saved = _axes_of_saved(monkeypatch)
    plots.grouped_bars(str(tmp_path / "b.png"), ["g1", "g2"],
                       {"a": ([1.0, np.nan], [0.1, np.nan]), "b": ([-0.5, 0.2], [0.1, 0.1])},
                       ylabel="y", styles={"b": {"hatch": "//"}}, zero_line=True)
    ax = saved["fig"].axes[0]
    heights = sorted(p.get_height() for p in ax.patches)
    assert heights == pytest.approx([-0.5, 0.2, 1.0])                 # the NaN bar is not drawn
    assert [p.get_hatch() for p in ax.patches].count("//") == 2


def test_heatmap_centres_the_colour_scale_and_checks_shape(tmp_path):
    m = np.array([[0.06, 0.07], [0.06, 0.05]])
    path = plots.heatmap(str(tmp_path / "h.png"), m, row_labels=["x", "y"], xlabel="step", center=0.0625)
    assert (tmp_path / "h.png").stat().st_size > 0 and path.endswith("h.png")
    with pytest.raises(ValueError, match="one row per label"):
        plots.heatmap(str(tmp_path / "h.png"), m, row_labels=["x"], xlabel="step")
