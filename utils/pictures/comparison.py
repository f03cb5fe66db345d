"""darts_compare.py's picture: the test error and the weights of each variant's trained cell, one dot a seed,
the mean with its sample standard deviation beside them."""
from utils.pictures.curves import save_figure

# Where a variant's seeds are drawn, left of its mean and its std bar (in units of the variants' spacing).
DOTS_AT, MEAN_AT = -0.12, 0.12


def draw_comparison(comparison, out_path):
    """Two panels, test error (%) and weights, against the variants of `comparison` (comparison.json's dict);
    seeds that diverged have no dot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    variants = list(comparison["variants"])
    figure = Figure(figsize=(max(6.0, 1.1 * len(variants) + 2), 7.0), layout="constrained")
    FigureCanvasAgg(figure)
    panels = figure.subplots(2, 1, sharex=True)
    for ax, key, scale, label in ((panels[0], "test_error", 100, "Test error (%)"),
                                  (panels[1], "weights", 1, "Weights (auxiliary head excluded)")):
        for x, variant in enumerate(variants):
            entry = comparison["variants"][variant]
            values = [scale * run[key] for run in entry["per_seed"].values()]
            ax.scatter([x + DOTS_AT] * len(values), values, s=22, color="tab:blue", alpha=0.7, zorder=3,
                       label="seeds" if x == 0 else None)
            if entry[key] is not None:
                std = entry[key]["std"]
                ax.errorbar([x + MEAN_AT], [scale * entry[key]["mean"]], yerr=None if std is None else [scale * std],
                            fmt="o", color="black", capsize=4, zorder=4, label="mean ± std" if x == 0 else None)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    panels[0].legend(fontsize=8)
    panels[0].set_title(f"{comparison['error']} over seeds {', '.join(map(str, comparison['settings']['seeds']))}",
                        fontsize=9)
    panels[1].set_xticks(range(len(variants)), variants, rotation=20)
    save_figure(figure, out_path)
    return out_path
