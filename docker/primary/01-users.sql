-- Primary init (docker-compose.yml, run once by the mysql:8.4 entrypoint on
-- an empty datadir): forget the entrypoint's own transactions, then create
-- the accounts. These statements are binlogged with GTIDs, so the replicas
-- (docker/replica/01-replicate.sql, SOURCE_AUTO_POSITION=1) get them too.
RESET BINARY LOGS AND GTIDS;

-- replication account used by the replicas
CREATE USER 'repl'@'%' IDENTIFIED BY 'replpw';
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';

-- causeway's replica monitor ([monitor] in conf/causeway.docker.toml)
CREATE USER 'monitor'@'%' IDENTIFIED BY 'monitorpw';
GRANT REPLICATION CLIENT, PROCESS ON *.* TO 'monitor'@'%';
GRANT SELECT ON performance_schema.* TO 'monitor'@'%';

-- the application account ([[users]] app); read_only on replicas applies to it
CREATE DATABASE app;
CREATE USER 'app'@'%' IDENTIFIED BY 'apppw';
GRANT ALL PRIVILEGES ON app.* TO 'app'@'%';
