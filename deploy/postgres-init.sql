-- One database per service: each node's outbox and inbox are its own.
CREATE DATABASE lakou_registry OWNER lakou;
CREATE DATABASE lakou_gateway OWNER lakou;
CREATE DATABASE lakou_bpp OWNER lakou;
CREATE DATABASE lakou_bap OWNER lakou;
CREATE DATABASE lakou_connect OWNER lakou;
