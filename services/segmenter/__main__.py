from services.segmenter.app import create_app
from shared.runtime import serve
from shared.settings import get_settings

settings = get_settings()
serve(create_app(settings), service="segmenter", settings=settings, port=settings.segmenter_port)
