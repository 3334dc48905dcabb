"""facesearch dashboard (``streamlit run app.py``, ``make run``): the page menu. Each page
is a script in ``pages/`` that also runs on its own (AppTest)."""

import numpy as np
import streamlit as st
from PIL import Image

# The favicon is drawn here: a page's Material icon as favicon makes every visitor's
# browser fetch it from Google's font server (fonts.gstatic.com).
_icon = np.zeros((32, 32, 3), np.uint8)
_yy, _xx = np.mgrid[:32, :32]
_icon[(_yy - 13) ** 2 + (_xx - 13) ** 2 <= 100] = (79, 157, 255)  # the theme's primary colour
_icon[(_yy - 13) ** 2 + (_xx - 13) ** 2 <= 36] = 0
_icon[(np.abs(_yy - _xx) <= 2) & (_yy > 19) & (_yy < 30)] = (79, 157, 255)  # a magnifier's handle
st.set_page_config(layout="wide", page_icon=Image.fromarray(_icon))  # titles: each st.Page's
page = st.navigation([
    st.Page("pages/0_Home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/1_Match.py", title="Match", icon=":material/person_search:", url_path="Match"),
    st.Page("pages/2_Explore.py", title="Explore", icon=":material/scatter_plot:", url_path="Explore"),
    st.Page("pages/3_Evaluate.py", title="Evaluate", icon=":material/analytics:", url_path="Evaluate"),
    st.Page("pages/4_People.py", title="People", icon=":material/groups:", url_path="People"),
])
try:
    page.run()
except Exception as exc:  # Streamlit's stop and rerun are BaseExceptions: they pass through
    # client.showErrorDetails is off for everyone (.streamlit/config.toml: it is one setting
    # per server); the admin sees the traceback here, a visitor one sentence.
    from components.common import show_crash

    show_crash(exc)
