"""The Gradio demo (`pip install -e ".[app]"`): `python app.py --model RUN_DIR|CHECKPOINT|HUB_ID[,HUB_ID...]`.

- `demo.py`: the page and one request (self-contained: it is also the Space's `demo.py`).
- `launch.py`: the local launcher: run directories (fold models + their ensemble), checkpoints, Hub ids, each on the
  fastest CPU backend that keeps the labels (`modeling.inference.backend_choice`).

Importing this package does not import gradio (only `demo.build_demo` does).
"""
