// The course's keys.js: every setting from the environment, the same names as fibstack's.
module.exports = {
  redisHost: process.env.REDIS_HOST,
  redisPort: process.env.REDIS_PORT,
  pgUser: process.env.PGUSER,
  pgHost: process.env.PGHOST,
  pgDatabase: process.env.PGDATABASE,
  pgPassword: process.env.PGPASSWORD,
  pgPort: process.env.PGPORT,
  // The course listens on 5000; here a free port from the bench.
  port: process.env.PORT || 5000,
};
