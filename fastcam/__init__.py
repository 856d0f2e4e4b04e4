__version__ = "0.1.0"

def app(learn, **kwargs):
    "Serve a Gradio page that explains one uploaded image (or typed text) at a time with `learn` (see `fastcam.webapp.app`; needs `pip install \"fastcam[app]\"`)"
    from .webapp import app as page
    return page(learn, **kwargs)
