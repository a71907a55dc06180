"""polish3, the bundled demo corpus: facts only (read with `loader: audio_folder`, `root: data/polish3`).

"Emotions in Polish speech recordings" as prepared for this project: 450 single spoken words, 3 classes (anger,
fear, neutral; 150 each), 5 male speakers m1..m5 (90 each), so leave-one-speaker-out gives 5 folds.
Sources: data/polish3/ATTRIBUTION.md (the license and the attribution that must travel with the corpus) and the
dataset record https://doi.org/10.34808/h46c-hb44 (Gdańsk University of Technology).
"""

from .corpus import CorpusInfo


POLISH3 = CorpusInfo(
    name="polish3",
    title="Emotions in Polish speech recordings (polish3: anger/fear/neutral, 5 male speakers)",
    labels=("anger", "fear", "neutral"),
    license="cc-by-4.0",
    terms="Creative Commons Attribution 4.0 (CC BY 4.0). Attribution:",
    citation="Mięsikowska, M., & Świsulski, D. (2020). Emotions in Polish speech recordings [dataset]. Gdańsk "
    "University of Technology. https://doi.org/10.34808/h46c-hb44",
    language="pl",
    loader="audio_folder",
    folds="leave_speakers_out",
)

__all__ = ["POLISH3"]
