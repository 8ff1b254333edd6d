# ruff: noqa: E501  (the paper's sentences, one per line, as quoted)
"""conf/toy/claims.yaml: every claim sentence of Sections 3-4 and Appendix A has an entry, and a
malformed entry is refused with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmrepro.toy.registry import RegistryError, load

# The paper's toy claim sentences (Sections 3-4 and Appendix A), each with the figure or table it is
# about: a sentence here without a registry entry, or an entry that tests none of that artefact's
# claims, fails the test. Kept here, apart from the registry, so that deleting an entry is noticed.
PAPER_SENTENCES = [
    ("Figure 1", "We observe that while other optimizers converge to higher and often sharper loss regions, Adam+CM is able to find the flat region that contains the global minimum."),
    ("Figure 1", "While the other optimizers get stuck in sub-optimal surfaces, Adam+CM explores a lower loss surface and is able to reach the global minimum."),
    ("Figure 2", "Gradient cancellation is observed in Adam+CG as buffer mean and new gradients cancel each other out, yielding a small update. Conversely, Adam+CM escapes sub-optimal minima and converges near the global minimum."),
    ("Figure 2", "We hypothesize that with CG, while the buffer gradients can promote exploration initially (Figure 1), the parameters remain fixed within sharp regions due to gradient cancellation."),
    ("Figure 2", "Figure 2 illustrates this phenomenon on a toy surface, by showing the buffer gradients (thin blue lines) and their means (black arrow) as well as the new gradient (green arrow), within sharp basins where Adam+CG gets stuck."),
    (None, "While at a sharp minimum, the elements of the buffer will still be quickly replaced (Figure 1), due to the inertia in the momentum terms the variance will stay low."),
    ("Figure 11", "When we track the trajectory along with the gradient directions of the buffer in the Adam+CG optimizer on the Ackley+Rosenbrock function (defined in the next section), we found that CG gets stuck in the sharp minima (see Figure 11)."),
    ("Figure 11", "Since four of these gradients point in opposite directions, their mean would be small and cancel the current gradient update out. As a result, parameters get stuck in the sharp minima."),
    ("Figure 12", "Even when the new gradient direction aligns with the buffer mean in CG, it remains stuck in the sharp surface. On the other hand, the buffer directions do not drastically change in CM and therefore it finds the surface that contains the global minima."),
    ("Figure 12", "Buffer quantities in Adam+CG are dominated by directions of higher sharpness (towards top-left direction and bottom-right direction) and the new gradient directions have high variance, yielding a small update. Conversely, Adam+CM escapes sub-optimal minima and converges near the global minimum."),
    ("Figure 3", "Critical momenta converges for a wide range of condition numbers in both cases."),
    ("Figure 3", "In both variants, we can see that critical momenta converge for a wide range of condition numbers."),
    ("Figure 4", "We observe that, here, only the CM variants are able to explore the loss surface, resulting in a lower loss solution."),
    ("Figure 4", "While the other optimizers get stuck in sub-optimal minima near the initialisation point (black square), both CM variants explore and find the lower loss surface near the global solution (black diamond)."),
    ("Figure 4", "We observed that, unlike other baselines, Adam+CM and Adam+SAM+CM escape local minima, explore the loss surface, and navigate towards the region containing global minima."),
    ("Figure 16", "In this experiment, reducing the learning rate helps in settling down to the global minimum and stopping further exploration."),
    ("Figure 16", "We plot the loss curve in Figure 16 and observe that Adam+CM oscillates near the global minima."),
    ("Figure 13", "While other optimizers may get stuck at nearby local minima, Adam+CM benefits from more exploration and finds a lower-loss surface that may contain the global minima."),
    ("Figure 14", "While other optimizers may get stuck at a sub-optimal loss surface, Adam+CM benefits from more exploration and finds the global minimum."),
    ("Table 1", "Results in Table 1 show that Adam+CM finds flatter solutions with a lower loss value compared to Adam, Adam+CG, and Adam+SAM in both examples."),
    ("Table 1", "Adam+CM is able to find solutions that are both flatter and deeper (lower loss) than other optimizers in this setting."),
    ("Table 1", "Furthermore, Adam and Adam+SAM reach almost equal loss values for the Levy function with a negligible difference in sharpness, but for the GP function, Adam+SAM converges to a sub-optimal minimum with lower sharpness."),
    ("Table 5", "Adam+CM is able to find solutions that are both flatter and deeper (lower loss) as buffer size increases."),
    ("Table 5", "We observe that Adam+CM is able to find a flatter and lower-loss solution as buffer size increases."),
    ("Table 5", "The results also suggest that in a controlled setting, the larger buffer size helps find a flatter minimum."),
    ("Table 5", "Moreover, Adam+CM always outperforms Adam+CG even with a smaller buffer size."),
    ("Table 5", "We analyze how the buffer size controls the amount of exploration empirically in Appendix A.2.1, where we show that even with a small buffer size, Adam+CM can escape sharper minima and explore lower loss regions than other optimizers."),
    ("Figure 5", "We can see that Adam mostly converges to the minimum closest to the initial point."),
    ("Figure 5", "Adam+CM converges to the flatter minimum for different initial points and degrees of sharpness more often than Adam+CG."),
    ("Figure 17", "In both these figures, the observation remains the same that is Adam+CM converges to flatter minima for different initial points and degrees of sharpness."),
    ("Figure 18", "In both these figures, the observation remains the same that is Adam+CM converges to flatter minima for different initial points and degrees of sharpness."),
    ("Figure 17", "We also observe that C plays an important role in convergence to flatter minima in both Adam+CG and Adam+CM."),
    ("Figure 18", "We also observe that C plays an important role in convergence to flatter minima in both Adam+CG and Adam+CM."),
    ("Figure 7", "We can see that for C = 10, with an exception at s = 2, Adam+CM consistently finds the minimum at x = 0 more often than other optimizers."),
    ("Figure 7", "Interestingly, as s increases, Adam+CG is outperformed by both Adam and Adam+SAM, which indicates that Adam+CG is more susceptible to getting stuck at sharper minima in this example."),
    ("Figure 7", "Figure 7 (right) shows that the tendency of Adam+CM to escape minima is dependent on C such that, a larger value of C results in convergence to flatter minimum more often."),
    ("Figure 6", "We observe that Adam+CM (with buffer capacity C = 20) has a higher escape ratio than others as the sharpness increases."),
    ("Figure 6", "Adam+CM shows a higher ability to escape sharp minima in this setting."),
    ("Figure 15", "We observe that Adam+CM has better exploration capabilities than MEG."),
    ("Figure 15", "Overall, we observe that Adam+CM exhibits better exploration of the loss landscape."),
]  # fmt: skip


def test_every_claim_sentence_has_an_entry_that_tests_its_artefact():
    registry = load()
    by_quote = {s.quote: s for s in registry.sentences}
    for artefact, quote in PAPER_SENTENCES:
        sentence = by_quote.get(quote)
        assert sentence is not None, f"no registry entry quotes: {quote}"
        assert sentence.place, quote
        if artefact is None:
            assert sentence.not_testable, f"{quote}: neither tested nor said why not"
            continue
        families = {registry.claim(i).family for i in sentence.claims + sentence.same_as}
        assert artefact in families, f"{quote}: no claim of {artefact} tests it ({families})"


def test_the_registry_quotes_nothing_outside_the_list():
    quotes = {quote for _, quote in PAPER_SENTENCES}
    assert [s.id for s in load().sentences if s.quote not in quotes] == []


def test_every_figure_with_a_claim_sentence_keeps_a_tested_claim():
    families = {c.family for c in load().claims}
    assert {artefact for artefact, _ in PAPER_SENTENCES if artefact} <= families


def test_escape_claims_use_the_basin_rule_with_both_alternatives():
    registry = load()
    assert registry.measures["escaped_basin"].alternatives == ("escaped_snapshot", "escaped_mean50")
    escape = [c for c in registry.claims if any(p.column.startswith("escaped") for p in c.parts)]
    assert escape and all(p.column == "escaped_basin" for c in escape for p in c.parts)
    assert {"escaped_basin", "basin_share"} <= {
        p.column for c in registry.claims if c.family == "Figure 6" for p in c.parts
    }


def test_duplicates_are_tested_once():
    claims = load().claims
    keys = [(c.source, c.b_source, c.test, c.a, c.b, c.setting, c.where, c.settings, c.parts) for c in claims]
    assert len(keys) == len(set(keys))
    # Figure 5 is Figure 17's C = 5 and Table 5's (20, 0.99) pair is Table 1's Levy CM-vs-CG claim
    assert not [c for c in claims if c.family == "Figure 17" and c.a == "Adam+CM C=5"]
    assert not [c for c in claims if c.family == "Table 5" and c.a == "Adam+CM C=20 decay=0.99" and "CG" in c.b]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("measures: {}\nsentences: [{id: x, place: p, quote: q}]\n", "neither claims, same_as nor not_testable"),
        ("measures: {loss: {better: up, min_effect: 0.1}}\nsentences: []\n", "better='up' must be one of"),
        ("measures: {loss: {better: lower, min_effect: -1}}\nsentences: []\n", "min_effect=-1 must be a number >= 0"),
        (
            "measures: {}\nsentences: [{id: x, place: p, quote: q, claims: [{id: c, artefact: Figure 1, claim: w, "
            "source: s, population: uniform, a: A, b: B, measures: [loss]}]}]\n",
            "measure 'loss' is not declared",
        ),
        (
            "measures: {}\nsentences: [{id: x, place: p, quote: q, same_as: [nope]}]\n",
            "same_as names no declared claim",
        ),
        ("{{{", "cannot read the claims registry"),
        ("- a list\n", "not a claims registry"),
    ],
)
def test_a_malformed_registry_is_refused_in_one_line(tmp_path: Path, text, message):
    path = tmp_path / "claims.yaml"
    path.write_text(text)
    with pytest.raises(RegistryError, match=message) as error:
        load(path)
    assert "\n" not in str(error.value)
