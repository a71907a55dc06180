"""nemo4, the 4-class subset of nEMO: facts only (read with `loader: audio_folder`, `root: …/nemo4`).

3076 sentences of 9 actors (female EB0, IC0, KD0, MK0; male KS0, MP0, SM0, TP0, WR0) in the IEMOCAP classes
neutral, happy, sad, angry (the Hub dataset has six: fear and surprise are left out). Non-commercial: never copied
into this repository. Folds follow the IEMOCAP protocol for corpora without sessions (configs/nemo4.yaml).
Sources: the dataset card https://huggingface.co/datasets/amu-cai/nEMO (CC BY-NC-SA 4.0, the six emotions, nine
actors) and Christop (2024), the LREC-COLING paper it asks to cite.
"""

from .corpus import CorpusInfo


NEMO4 = CorpusInfo(
    name="nemo4",
    title="nEMO, Polish emotional speech (4-class subset: angry/happy/neutral/sad, 9 speakers)",
    labels=("neutral", "happy", "sad", "angry"),
    license="cc-by-nc-sa-4.0",
    terms="Creative Commons Attribution-NonCommercial-ShareAlike 4.0 (CC BY-NC-SA 4.0): the weights inherit the "
    "non-commercial, share-alike terms.",
    citation="Christop, I. (2024). nEMO: Dataset of Emotional Speech in Polish. LREC-COLING 2024.",
    language="pl",
    loader="audio_folder",
    folds="gender_pairs",
    hub_id="amu-cai/nEMO",
)

__all__ = ["NEMO4"]
