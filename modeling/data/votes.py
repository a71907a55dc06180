"""Annotator votes → a per-utterance label distribution over the corpus's classes (the `label_distribution` column).

One rule for every corpus (docs/imbalance_and_soft_labels.md):

- each annotator casts one vote; an annotator who gives k labels (IEMOCAP's `C-E1: Neutral state; Excited;`) gives
  each of them 1/k of that vote;
- labels are mapped to the classes by the corpus's own map (IEMOCAP: Excited → happy, the 4-class merge; "Neutral
  state" → neutral); labels outside the classes ("Frustration", "Other", "Surprise" in a 4-class run, anything
  unknown) are dropped with their share of the vote;
- the remaining votes are normalised to sum to 1. Ties stay ties (equal probabilities): the distribution never has
  to pick a winner; the consensus label (the corpus's own) is the `label` column, on which metrics are computed;
- an utterance none of whose votes falls in the classes gets the one-hot of its consensus label.
"""

from collections.abc import Iterable, Mapping, Sequence


def vote_distribution(
    votes: Iterable[Sequence[str]], label_map: Mapping[str, str], classes: Sequence[str], consensus: str
) -> list[float]:
    """The label distribution of one utterance.

    Args:
        votes: one entry per annotator, each the labels that annotator gave (as written in the corpus's file).
        label_map: corpus label (lower-cased, stripped) → class name; labels not in it are outside the classes.
        classes: the class names in label-id order.
        consensus: the utterance's consensus class (used when no vote falls in the classes).
    Returns:
        (C,) probabilities summing to 1 (up to float rounding), in `classes` order.
    Raises:
        ValueError: `consensus` is not one of `classes`.
    """
    if consensus not in classes:
        raise ValueError(f"consensus label {consensus!r} is not one of the classes {list(classes)}.")
    mass = dict.fromkeys(classes, 0.0)
    for labels in votes:
        labels = [label.strip().lower() for label in labels if label.strip()]
        for label in labels:
            name = label_map.get(label)
            if name in mass:
                mass[name] += 1.0 / len(labels)
    total = sum(mass.values())
    if total == 0:
        return [1.0 if name == consensus else 0.0 for name in classes]
    return [mass[name] / total for name in classes]


def distribution_from_cell(value, classes: Sequence[str]) -> tuple[list[float] | None, str | None]:
    """A distribution column's value (own data: metadata.csv, a Hub dataset) → (probabilities or None, problem).

    Accepted: a list of C numbers in label-id order (`[0.5, 0.5, 0, 0]`), a mapping {class name: probability}
    (classes not named get 0), either as JSON text (a CSV cell), or empty (None: no distribution for the row).
    Lists are returned as given (their length and sum are checked before training, with the file named:
    `modeling.trainer.loss_options.distribution_problems`); a mapping naming a class outside `classes`, or text
    that is not JSON, is a problem here.
    """
    import json

    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None, f"{value!r} is not a JSON list [p_1, ..., p_C] or mapping {{class: p}}"
    if isinstance(value, Mapping):
        unknown = [name for name in value if name not in classes]
        if unknown:
            return None, f"class(es) {unknown} are not among the classes {list(classes)}"
        return [float(value.get(name, 0.0)) for name in classes], None
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return list(value), None
    return None, f"{value!r} is not a list of probabilities or a mapping {{class: p}}"


__all__ = ["distribution_from_cell", "vote_distribution"]
