from router.context import RequestContext
class MessagesStreamFilter:
    def __init__(self, ctx: RequestContext) -> None:
        pass
    def feed(self, payload: bytes) -> list[bytes]:
        return [payload]
    def finish(self) -> list[bytes]:
        return []
