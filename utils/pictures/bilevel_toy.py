"""The bilevel toy problem's trajectories in the (alpha, w) plane, drawn as the DARTS paper's Figure 2 and the
course project's notebook draw them: one series of points per xi, the feasible set w = alpha (where w is the
best response to alpha), the optimum and the start."""
from utils.pictures.curves import save_figure


def plot_toy_trajectories(trajectories, start, optimum, out_path):
    """trajectories: [(xi, (n, 2) array of (alpha, w))]; writes out_path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 6.5), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.axline((0.0, 0.0), slope=1.0, linestyle="--", color="tab:red", linewidth=1,
              label="feasible set w = α (w best for α)")
    for xi, points in trajectories:
        order = "first order" if xi == 0 else "second order"
        alpha, w = points[-1]
        ax.scatter(points[:, 0], points[:, 1], s=9, zorder=2,
                   label=f"ξ = {xi:g} ({order}): {len(points) - 1} steps, ends at ({alpha:.3f}, {w:.3f})")
    ax.scatter(*optimum, marker="*", s=300, color="black", zorder=3, label=f"optimum ({optimum[0]:g}, {optimum[1]:g})")
    ax.scatter(*start, marker="*", s=300, color="grey", zorder=3, label=f"start ({start[0]:g}, {start[1]:g})")
    ax.set_xlim(0.5, 3.5)
    ax.set_ylim(-2.5, 3.5)
    ax.set_xlabel("architecture α")
    ax.set_ylabel("weight w")
    ax.set_title("L_train = (w − α)², L_val = αw − 2α + 1: alternating steps with the hypergradient of\n"
                 "L_val(w − ξ ∂L_train/∂w, α)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    save_figure(figure, out_path)
    return out_path
