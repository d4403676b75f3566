"""Reports of a once-for-all search: the table, the CSV and the Pareto-front PNG."""

import csv
import io

from vai_optimizer_tf.utils import atomic


def pareto_front(points, mode="max"):
    """The points no other point beats on both FLOPs reduction and score.

    Args:
      points: `(flops_reduction, score)` pairs.
      mode: `"max"` when a higher score is better, `"min"` when lower is.

    Returns:
      The front, by ascending FLOPs reduction.
    """
    sign = 1.0 if mode == "max" else -1.0
    front, best = [], None
    for reduction, score in sorted(set(points), key=lambda p: (-p[0], -sign * p[1])):
        if best is None or sign * score > best:
            front.append((reduction, score))
            best = sign * score
    return sorted(front)


def table(subnets, scored_counts=None):
    """One line per target: the subnet found, its FLOPs reduction and score."""
    lines = [f"{'target':>7}  {'FLOPs reduction':>15}  {'score':>10}  {'scored':>7}"]
    for target, s in sorted(subnets.items()):
        count = (scored_counts or {}).get(target, "")
        lines.append(f"{target:>7.0%}  {s.flops_reduction:>15.2%}  {s.score:>10.4f}  "
                     f"{count:>7}")
    return "\n".join(lines)


def write_csv(path, subnets, space):
    """One row per target: target, FLOPs reduction, score, then every elastic gene."""
    out = io.StringIO()
    writer = csv.writer(out)
    groups = [g.name for g in space.groups]
    kernels = [k.path for k in space.kernels]
    writer.writerow(["target", "flops_reduction", "score"] + groups
                    + [f"kernel:{p}" for p in kernels])
    for target, s in sorted(subnets.items()):
        writer.writerow([f"{target:.6f}", f"{s.flops_reduction:.6f}", repr(s.score)]
                        + [s.config.widths[n] for n in groups]
                        + [s.config.kernel_sizes[p] for p in kernels])
    atomic.write_text_atomic(path, out.getvalue())


def plot(path, points, subnets, model_name, mode="max"):
    """A PNG of every scored configuration, the Pareto front and the subnet of each target.

    Returns False without matplotlib.
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter([p[0] for p in points], [p[1] for p in points], s=10, color="tab:blue",
               alpha=0.4, label="scored configurations")
    front = pareto_front(points, mode)
    ax.plot([p[0] for p in front], [p[1] for p in front], color="tab:green", linewidth=1.2,
            label="Pareto front")
    for target, s in sorted(subnets.items()):
        ax.axvline(target, color="gray", linewidth=0.6, linestyle="--")
        ax.scatter([s.flops_reduction], [s.score], s=70, marker="*", color="tab:red")
    ax.scatter([], [], s=70, marker="*", color="tab:red", label="best per target")
    ax.set_xlabel("FLOPs reduction")
    ax.set_ylabel("score after adaptive BN")
    ax.set_title(f"Once-for-all search of {model_name}: {len(set(points))} configurations")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return True
