"""Everything tests build: messages (``messages``), events the services emit
(``emitted``), the services themselves (``services``)."""
