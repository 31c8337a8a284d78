"""`avat3r view`: a local web page that orbits an avatar rendered live by the toolkit (sliders, presets, a codes
timeline), and a static offline page of one expression drawn in the browser."""

from stages.view.controls import FaceControls, face_controls
from stages.view.export import export_page, page_html, to_viewer_frame
from stages.view.renderer import Frame, GaussianCache, ViewRenderer, orbit_camera
from stages.view.requests import CameraState, FrameRequest, RequestError, parse_codes_upload, parse_request
from stages.view.server import ViewSettings, bind, create_app, is_loopback, serve_forever, serve_in_background

__all__ = ["CameraState", "FaceControls", "Frame", "FrameRequest", "GaussianCache", "RequestError",
           "ViewRenderer", "ViewSettings", "bind", "create_app", "export_page", "face_controls", "is_loopback",
           "orbit_camera", "page_html", "parse_codes_upload", "parse_request", "serve_forever",
           "serve_in_background", "to_viewer_frame"]
