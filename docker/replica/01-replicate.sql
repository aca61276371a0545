-- Replica init (docker-compose.yml, run once by the mysql:8.4 entrypoint on
-- an empty datadir): forget the entrypoint's own transactions so this
-- replica's GTID set is a subset of the primary's, then replicate everything
-- from the primary with GTID auto-positioning. The primary's accounts
-- (docker/primary/01-users.sql) arrive through replication. The channel
-- restarts by itself when the server restarts.
RESET BINARY LOGS AND GTIDS;

CHANGE REPLICATION SOURCE TO
  SOURCE_HOST = 'primary',
  SOURCE_PORT = 3306,
  SOURCE_USER = 'repl',
  SOURCE_PASSWORD = 'replpw',
  SOURCE_AUTO_POSITION = 1,
  GET_SOURCE_PUBLIC_KEY = 1,
  SOURCE_CONNECT_RETRY = 2,
  SOURCE_RETRY_COUNT = 300;

START REPLICA;
