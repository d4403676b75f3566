"""`Subnet` records of a one-step search, and their reports (table, CSV, PNG)."""

import csv
import dataclasses
import io
from typing import Dict, Optional

from vai_optimizer_tf.utils import atomic


@dataclasses.dataclass(frozen=True)
class Subnet:
    """One scored candidate of a one-step search.

    Attributes:
      index: Position in the candidate sequence (0 is the uniform cut).
      flops_reduction: Analytic FLOPs reduction of its slim model.
      score: `eval_fn` after adaptive BN.
      widths: Group name -> kept width.
      latency: For a latency-targeted search, the predicted latency as a
        fraction of the baseline's; otherwise None.
    """

    index: int
    flops_reduction: float
    score: float
    widths: Dict[str, int]
    latency: Optional[float] = None

    def __repr__(self):
        return (f"Subnet(index={self.index}, flops_reduction={self.flops_reduction:.4f}, "
                f"score={self.score:.4f})")


def best(subnets, mode="max"):
    """The best-scoring subnet; ties go to the lower index (the uniform cut first)."""
    sign = -1.0 if mode == "max" else 1.0
    return min(subnets, key=lambda s: (sign * s.score, s.index))


def table(subnets, mode="max", top=10):
    """The `top` subnets by score, then the uniform cut, one line each."""
    ranked = sorted(subnets, key=lambda s: ((-1 if mode == "max" else 1) * s.score, s.index))
    shown = ranked[:top]
    uniform = [s for s in subnets if s.index == 0]
    if uniform and uniform[0] not in shown:
        shown.append(uniform[0])
    lines = [f"{'rank':>4}  {'index':>5}  {'FLOPs reduction':>15}  {'score':>10}"]
    for s in shown:
        rank = ranked.index(s) + 1
        note = "  (uniform cut)" if s.index == 0 else ""
        lines.append(f"{rank:>4}  {s.index:>5}  {s.flops_reduction:>15.2%}  "
                     f"{s.score:>10.4f}{note}")
    return "\n".join(lines)


def write_csv(path, subnets, group_names):
    """All subnets, one row each: index, FLOPs reduction, score, then each group's width."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["index", "flops_reduction", "score"] + list(group_names))
    for s in sorted(subnets, key=lambda s: s.index):
        writer.writerow([s.index, f"{s.flops_reduction:.6f}", repr(s.score)]
                        + [s.widths.get(n, "") for n in group_names])
    atomic.write_text_atomic(path, out.getvalue())


def plot(path, subnets, model_name, target, mode="max"):
    """A PNG scatter of score against FLOPs reduction; returns False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    chosen = best(subnets, mode)
    others = [s for s in subnets if s.index != 0 and s is not chosen]
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter([s.flops_reduction for s in others], [s.score for s in others], s=12,
               color="tab:blue", alpha=0.6, label="candidates")
    for s, color, label in (([x for x in subnets if x.index == 0] or [None])[0], "tab:orange",
                             "uniform cut"), (chosen, "tab:red", f"best (#{chosen.index})"):
        if s is not None:
            ax.scatter([s.flops_reduction], [s.score], s=60, color=color, label=label,
                       marker="*")
    ax.axvline(target, color="gray", linewidth=0.8, linestyle="--")
    ax.set_xlabel("FLOPs reduction")
    ax.set_ylabel("score after adaptive BN")
    ax.set_title(f"One-step search of {model_name}: {len(subnets)} subnets")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return True
