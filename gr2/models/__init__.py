"""The trained models every stage asks, one layer below the stages (above gr2.rerank): loading a saved
LM, decoding with it (Hugging Face, or CTranslate2 in ct2.py), the text it is asked in, the sequence
model behind the prompts' evidence notes, and the held-out slates. Training writes these models; eval and serving read them from here, never
from gr2.training."""
