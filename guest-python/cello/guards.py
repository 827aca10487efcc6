"""Guards a route declares and the host enforces before the handler runs,
under the name the Cello framework's documents import them by:

    from cello.guards import RoleGuard

    @app.post("/items", guards=[RoleGuard(["editor"])])
    async def create_item(request, item: CreateItem): ...
"""

from .security import RoleGuard, ScopeGuard

__all__ = ["RoleGuard", "ScopeGuard"]
