"""The web console: server-rendered pages for the people who run campaigns and for operators.

It is a service of its own that holds no database or broker credentials. Every page is made from
the engine's public HTTP APIs — the segmenter's tenant and operator API, the tracker's progress,
logs and CSV — called with the signed-in person's own credential (a tenant's API key or the
operator token), so the console can show or change only what that credential may, every check
of the APIs (tenant scoping, validation, abuse limits, audit) applies to it unchanged, and a flaw
in a page cannot reach another tenant's rows. Where a page needs something the APIs do not offer,
the page does without it rather than read the database behind the APIs' back.

Pages are plain HTML forms that work without JavaScript; htmx (vendored in ``static/``) makes the
audience count, the message preview, the test-send status and the campaign progress (server-sent
events, relayed from the tracker's stream) live where JavaScript runs.
"""
