#include <catch2/catch.hpp>

#include "util/database_uri.h"

using namespace bw;

TEST_CASE("a database value is a PostgreSQL URI by its scheme only", "[unit][util][database]") {
  CHECK(is_postgres_uri("postgresql://db/bw"));
  CHECK(is_postgres_uri("postgres://db/bw"));
  CHECK_FALSE(is_postgres_uri("/var/lib/basewatch/basewatch.db"));
  CHECK_FALSE(is_postgres_uri("postgresql.db"));
  CHECK_FALSE(is_postgres_uri("host=db dbname=bw"));
  CHECK_FALSE(is_postgres_uri("POSTGRESQL://db/bw"));
}

TEST_CASE("redact_database hides every password a URI can hold", "[unit][util][database]") {
  CHECK(redact_database("/var/lib/basewatch/basewatch.db") == "/var/lib/basewatch/basewatch.db");
  CHECK(redact_database("postgresql://db.example.com/bw") == "postgresql://db.example.com/bw");
  CHECK(redact_database("postgresql://bw@db.example.com/bw?sslmode=verify-full") == "postgresql://bw@db.example.com/bw?sslmode=verify-full");
  CHECK(redact_database("postgresql://bw:s3cret@db.example.com:5432/bw") == "postgresql://bw:***@db.example.com:5432/bw");
  CHECK(redact_database("postgres://bw:@db/bw") == "postgres://bw:***@db/bw");
  CHECK(redact_database("postgresql://bw@db/bw?password=s3cret&sslmode=require") == "postgresql://bw@db/bw?password=***&sslmode=require");
  CHECK(redact_database("postgresql://db/bw?sslmode=require&pass%77ord=s3cret") == "postgresql://db/bw?sslmode=require&pass%77ord=***");
  CHECK(redact_database("postgresql://u:a@b@db/bw?password=x&password=y") == "postgresql://u:***@db/bw?password=***&password=***");
  // Unencoded '/', '?' or '@' in a password (which libpq misreads) are still hidden.
  CHECK(redact_database("postgresql://u:pa/ss@db/bw") == "postgresql://u:***@db/bw");
  CHECK(redact_database("postgresql://u:pa?ss@db/bw") == "postgresql://u:***@db/bw");
  CHECK(redact_database("postgresql://u:p@ss@db/bw?passfile=/a@b") == "postgresql://u:***@db/bw?passfile=/a@b");
  // libpq reads "x?password=a" as a user name when an '@' follows: hidden either way.
  CHECK(redact_database("postgresql://x?password=abc@db") == "postgresql://x?password=***");
  CHECK(redact_database("postgresql://u:pa?password=zz@db/bw") == "postgresql://u:***");
  // Hosts lists and IPv6 keep their colons.
  CHECK(redact_database("postgresql://[::1]:5432,db2:5433/bw") == "postgresql://[::1]:5432,db2:5433/bw");
  CHECK(redact_database("postgresql://u:pw@[::1]:5432/bw") == "postgresql://u:***@[::1]:5432/bw");
}

TEST_CASE("the passwords of a URI, as written and decoded, are what messages lose", "[unit][util][database]") {
  CHECK(database_passwords("/path/basewatch.db").empty());
  CHECK(database_passwords("postgresql://bw@db/bw").empty());
  CHECK(database_passwords("postgresql://bw:s%3Fcret@db/bw?password=two") ==
        std::vector<std::string>{"s%3Fcret", "s?cret", "s", "cret", "two"});
  CHECK(redact_secrets("invalid percent-encoded token: \"s%3Fcret\", s?cret", database_passwords("postgresql://bw:s%3Fcret@db/bw")) ==
        "invalid percent-encoded token: \"***\", ***");
  CHECK(redact_secrets("nothing to hide", {}) == "nothing to hide");
  CHECK(redact_secrets("aaaa", {"aa"}) == "***");
  CHECK(redact_secrets("pw: s?cret.", {"s", "cret", "s?cret"}) == "pw: ***.");
  // Secrets made of stars do not feed on the stars that hide others.
  CHECK(redact_secrets("a*b**c", {"*", "**", "***", "****"}) == "a***b***c");
}

TEST_CASE("map_uri_parameter rewrites one parameter's value, decoded and encoded again", "[unit][util][database]") {
  auto upper = [](const std::string& v) { return "/base/" + v; };
  CHECK(map_uri_parameter("postgresql://db/bw?passfile=pg%20pass&sslmode=require", "passfile", upper) ==
        "postgresql://db/bw?passfile=/base/pg%20pass&sslmode=require");
  CHECK(map_uri_parameter("postgresql://db/bw?sslmode=require", "passfile", upper) == "postgresql://db/bw?sslmode=require");
  CHECK(map_uri_parameter("postgresql://db/bw", "passfile", upper) == "postgresql://db/bw");
  CHECK(map_uri_parameter("postgresql://db/bw?passfile=", "passfile", [](const std::string& v) { return "[" + v + "]"; }) ==
        "postgresql://db/bw?passfile=%5B%5D");
  CHECK(map_uri_parameter("postgresql://u:p?ss@db/bw?passfile=a", "passfile", upper) == "postgresql://u:p?ss@db/bw?passfile=/base/a");
}

TEST_CASE("percent coding", "[unit][util][database]") {
  CHECK(percent_decode("a%20b%2fc%zz%4") == "a b/c%zz%4");
  CHECK(percent_encode("/etc/pg pass&x=y") == "/etc/pg%20pass%26x%3Dy");
  CHECK(percent_decode(percent_encode("any \x01 byte \xff")) == "any \x01 byte \xff");
}
