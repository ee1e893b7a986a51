-- Runs once, when the MariaDB volume is first initialised (docker-entrypoint-initdb.d).
-- The image's entrypoint has already created the user 'lianghua'@'%' from MARIADB_USER / MARIADB_PASSWORD
-- (docker-compose.yml sets those from LH_MYSQL_PASSWORD): a .sql file cannot read the environment, so the
-- password never appears here. This grants that user every schema of the project: each service owns one
-- database `lh_<service>` and creates it on first start (shared.db.Database), hence the `lh%` pattern.
GRANT ALL PRIVILEGES ON `lh%`.* TO 'lianghua'@'%';
FLUSH PRIVILEGES;
