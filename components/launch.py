"""The dashboard's process as ``facesearch serve`` (``make run``) starts it:
``python -m components.launch run app.py [streamlit options]``.

It is ``python -m streamlit`` with one thing first: the default model and detector start
loading in a background thread of this process (facesearch.embedding.warmup) before
Streamlit serves anything, so the first upload does not wait for them; the Home page
says while they load (components/warmup_view.py), and one line in the log says when done.
"""

from __future__ import annotations

import sys


def main() -> None:
    # pylibsrtp before anything can import TensorFlow (a DeepFace model or mtcnn as the
    # default): components.common loads it, as every page does first.
    import components.common  # noqa: F401
    from facesearch.embedding.warmup import warm_up
    from facesearch.settings import get_settings

    warm_up(get_settings(), report=lambda w: print(w.summary(), file=sys.stderr, flush=True))
    from streamlit.web.cli import main as streamlit_main

    streamlit_main(prog_name="streamlit")  # the command line Streamlit sees, as `python -m streamlit`


if __name__ == "__main__":
    main()
