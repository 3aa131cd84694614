"""The HTTP API's routes, one ``APIRouter`` per resource; ``service/app.py`` includes them."""
