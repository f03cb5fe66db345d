"""alpha_history.npz with a variant's own architecture arrays: recorded, resumed and handed to the derivation."""
import numpy as np

from models.genotype import load_architecture
from models.search_network import ALPHA_NAMES
from utils.search.alpha_history import AlphaHistory, derive_from_history, history_values
from utils.search.variant import SearchVariant


def test_an_extra_array_is_recorded_resumed_and_derived_from(tmp_path):
    rng = np.random.default_rng(0)
    current = {"alpha_normal": rng.normal(size=(14, 8)), "alpha_reduction": rng.normal(size=(14, 8)),
               "beta_normal": rng.normal(size=14)}
    history = AlphaHistory({"alpha_history.npz": lambda: {k: v.copy() for k, v in current.items()}})
    current["beta_normal"] = current["beta_normal"] + 1.0
    history.record(str(tmp_path))
    with np.load(tmp_path / "alpha_history.npz") as saved:
        assert sorted(saved.files) == ["beta_normal", "normal", "reduction"]
        assert saved["beta_normal"].shape == (2, 14)
        np.testing.assert_array_equal(history_values(saved, 1)["beta_normal"], current["beta_normal"])
        assert sorted(history_values(saved, 0)) == sorted(current)

    resumed = AlphaHistory(history.sources)
    resumed.resume(history.arrays())
    current["alpha_normal"] = current["alpha_normal"] * 2
    (tmp_path / "resumed").mkdir()
    resumed.record(str(tmp_path / "resumed"))  # a directory of its own: the resumed history goes on from row 2
    with np.load(tmp_path / "resumed" / "alpha_history.npz") as saved:
        assert saved["normal"].shape == (3, 14, 8) and saved["beta_normal"].shape == (3, 14)
        np.testing.assert_array_equal(saved["normal"][2], current["alpha_normal"])

    seen = []

    def derive(values):
        seen.append(values)
        return SearchVariant.derive(type("Settings", (), {"derivation": "top-k"}), values)
    arch = derive_from_history(str(tmp_path / "alpha_history.npz"), 1, str(tmp_path / "arch.json"), derive)
    np.testing.assert_array_equal(seen[0]["beta_normal"], current["beta_normal"])
    assert set(seen[0]) == set(ALPHA_NAMES) | {"beta_normal"}
    assert load_architecture(str(tmp_path / "arch.json")) == arch
