from services.sender.app import create_app
from shared.runtime import serve
from shared.settings import get_settings

settings = get_settings()
serve(create_app(settings), service="sender", settings=settings, port=settings.sender_port)
