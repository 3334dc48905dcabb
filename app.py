"""facesearch dashboard (``streamlit run app.py``, ``make run``): the page menu. Each page
is a script in ``pages/`` that also runs on its own (AppTest)."""

import streamlit as st

st.set_page_config(layout="wide")  # titles and icons: each st.Page's
page = st.navigation([
    st.Page("pages/0_Home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/1_Match.py", title="Match", icon=":material/person_search:", url_path="Match"),
    st.Page("pages/2_Explore.py", title="Explore", icon=":material/scatter_plot:", url_path="Explore"),
    st.Page("pages/3_Evaluate.py", title="Evaluate", icon=":material/analytics:", url_path="Evaluate"),
])
try:
    page.run()
except Exception as exc:  # Streamlit's stop and rerun are BaseExceptions: they pass through
    # client.showErrorDetails is off for everyone (.streamlit/config.toml: it is one setting
    # per server); the admin sees the traceback here, a visitor one sentence.
    from components.common import show_crash

    show_crash(exc)
