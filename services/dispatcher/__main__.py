from services.dispatcher.app import create_app
from shared.runtime import serve
from shared.settings import get_settings

settings = get_settings()
serve(create_app(settings), service="dispatcher", settings=settings, port=settings.dispatcher_port)
