"""Tilesmith's Streamlit operator UI: `streamlit run ui/app.py`.

The UI talks only to the gateway, through the SDK (`ui._gateway`). Its address and token come from
TILESMITH_ADDRESS and TILESMITH_TOKEN, read on the server side when the app runs; neither reaches the
browser.
"""

__all__: list[str] = []
