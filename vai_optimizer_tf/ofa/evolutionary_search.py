"""`EvolutionarySearch`: the best configuration within a FLOPs band, by mutation and crossover.

The search of Once-for-All (Cai et al., 2020) and Vitis AI's
`run_evolutionary_search`: a population of random configurations within the
band is scored; each generation keeps the best `parent_ratio` of it as
parents, and fills the population again with mutations of random parents
(each gene redrawn with `mutation_probability`) and crossovers of two. A
configuration whose analytic FLOPs leave the band is *repaired*: one gene at
a time moves a step toward the band, at random, until it lands inside.

Everything random is drawn from a generator seeded by `(seed, target)`, and
each generation depends only on the scores of the previous ones, so a
search resumed from cached scores, or run by several processes at once,
walks through exactly the same populations as an uninterrupted one.
"""

import numpy as np

_DRAWS_PER_CANDIDATE = 50


class EvolutionarySearch:
    """Searches one FLOPs band.

    Args:
      space: The `ConfigSpace`.
      flops: A `ConfigFlops` of the space.
      score: `fn(list of gene vectors) -> {gene vector: score}`; scores the
        vectors not scored yet (cached, shared with other processes).
      mode: `"max"` or `"min"`.
      population: Configurations per generation.
      generations: Number of generations, the random first one included.
      tolerance: Half-width of the FLOPs band, in FLOPs-reduction points.
      mutation_probability: Chance that a mutation redraws each gene.
      parent_ratio: Fraction of a generation kept as parents.
      mutation_ratio: Fraction of a generation made by mutation (the rest,
        after the parents, by crossover).
      seed: Seed of the draws.
    """

    def __init__(self, space, flops, score, mode="max", population=50, generations=20,
                 tolerance=0.01, mutation_probability=0.1, parent_ratio=0.25,
                 mutation_ratio=0.5, seed=0):
        self.space = space
        self.flops = flops
        self.score = score
        self.sign = -1.0 if mode == "max" else 1.0
        self.population = int(population)
        self.generations = int(generations)
        self.tolerance = float(tolerance)
        self.mutation_probability = float(mutation_probability)
        self.parents = max(1, int(round(parent_ratio * self.population)))
        self.mutations = int(round(mutation_ratio * self.population))
        self.seed = int(seed)

    # Band -------------------------------------------------------------------------------------

    def reachable(self):
        """`(lowest, highest)` FLOPs reduction of the space."""
        return (self.flops.reduction(self.space.largest_genes()),
                self.flops.reduction(self.space.smallest_genes()))

    def check_target(self, target):
        """Raises a `ValueError` when no configuration can be within the band of `target`."""
        low, high = self.reachable()
        if target - self.tolerance > high + 1e-12 or target + self.tolerance < low - 1e-12:
            raise ValueError(
                f"Invalid FLOPs target {target:.2f}: the supernet's configurations reduce "
                f"FLOPs by {low:.1%} (largest) to {high:.1%} (smallest). Add smaller "
                "`expand_ratios` (or `kernel_sizes`) to ofa_model() to reach it, or pick a "
                "target in that range.")

    def repair(self, genes, target, rng):
        """`genes` moved into the band of `target`, one gene step at a time, or None."""
        genes = [int(g) for g in genes]
        per_node = self.flops.per_node_of(genes)
        total = int(per_node.sum())
        limits = [len(c) - 1 for c in self.space.genes]
        for _ in range(4 * len(genes) + 20):
            reduction = 1.0 - total / self.flops.baseline
            if abs(reduction - target) <= self.tolerance + 1e-12:
                return tuple(genes)
            step = -1 if reduction < target else 1
            movable = [i for i, g in enumerate(genes) if 0 <= g + step <= limits[i]]
            if not movable:
                return None
            i = movable[rng.randint(len(movable))]
            genes[i] += step
            total, per_node = self.flops.changed(per_node, genes, i)
        return None

    def _new(self, make, target, rng, seen):
        """A repaired vector from `make()`, new if possible within the draw budget."""
        fallback = None
        for _ in range(_DRAWS_PER_CANDIDATE):
            genes = self.repair(make(), target, rng)
            if genes is None:
                continue
            if genes not in seen:
                seen.add(genes)
                return genes
            fallback = fallback or genes
        return fallback

    # Search -------------------------------------------------------------------------------------

    def _rng(self, target):
        return np.random.RandomState([self.seed, int(round(target * 1e6))])

    def run(self, target, on_generation=None):
        """Searches the band of `target`.

        Args:
          target: FLOPs reduction in (0, 1).
          on_generation: Optional `fn(generation index, gene vectors)`, called
            before each generation is scored.

        Returns:
          `(best gene vector, {gene vector: score} of every vector scored)`.

        Raises:
          ValueError: when the band holds no configuration.
        """
        self.check_target(target)
        rng = self._rng(target)
        seen = set()
        population = []
        for _ in range(self.population):
            genes = self._new(lambda: self.space.random_genes(rng), target, rng, seen)
            if genes is not None:
                population.append(genes)
        if not population:
            raise ValueError(
                f"No configuration within {self.tolerance:.1%} of a {target:.1%} FLOPs "
                f"reduction after {_DRAWS_PER_CANDIDATE * self.population} draws. Widen "
                "`tolerance`, or give ofa_model() more `expand_ratios`.")
        scored = {}
        order = {}
        for generation in range(self.generations):
            if generation:
                population = self._next(population, scored, order, target, rng, seen)
            if on_generation is not None:
                on_generation(generation, population)
            scored.update(self.score(population))
            for genes in population:
                order.setdefault(genes, len(order))
        best = min(scored, key=lambda g: (self.sign * scored[g], order[g]))
        return best, scored

    def _ranked(self, candidates, scored, order):
        unique = list(dict.fromkeys(candidates))
        return sorted(unique, key=lambda g: (self.sign * scored[g], order[g]))

    def _next(self, population, scored, order, target, rng, seen):
        parents = self._ranked(population, scored, order)[:self.parents]
        children = []
        while len(children) < self.mutations:
            parent = parents[rng.randint(len(parents))]
            child = self._new(lambda p=parent: self.space.mutate(p, self.mutation_probability,
                                                                  rng), target, rng, seen)
            children.append(child if child is not None else parent)
        while len(parents) + len(children) < self.population:
            a, b = parents[rng.randint(len(parents))], parents[rng.randint(len(parents))]
            child = self._new(lambda a=a, b=b: self.space.crossover(a, b, rng), target, rng,
                              seen)
            children.append(child if child is not None else a)
        return parents + children
