// Shell-word processing: every expansion form, quotes and escapes, with the
// results POSIX sh gives (and BuildKit's messages for the errors).
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "dockerfile/shell.h"

using bw::dockerfile::Env;
using bw::dockerfile::LexOptions;
using bw::dockerfile::process_word;

namespace {

struct ShellCase {
  std::string word;
  Env env;
  std::string expected;  // the text, or the error message when `fails`
  bool fails = false;
};

LexOptions backtick() {
  LexOptions o;
  o.escape = '`';
  return o;
}

}  // namespace

TEST_CASE("shell: expansion forms, quotes and escapes") {
  const Env v{{"V", "x"}};
  const Env empty{{"V", ""}};
  const Env none{};
  const Env path{{"V", "a/b/c"}};
  const std::vector<ShellCase> cases = {
      {"$V", v, "x"},
      {"${V}", v, "x"},
      {"a$V-b", v, "ax-b"},
      {"$", v, "$"},
      {"a$ b", v, "a$ b"},
      {"$1$@${#}", v, ""},
      {"${V:-w}", none, "w"},
      {"${V:-w}", empty, "w"},
      {"${V:-w}", v, "x"},
      {"${V-w}", none, "w"},
      {"${V-w}", empty, ""},
      {"${V:+w}", v, "w"},
      {"${V:+w}", empty, ""},
      {"${V+w}", empty, "w"},
      {"${V+w}", none, ""},
      {"${V:-$V$V}", Env{{"V", ""}}, ""},
      {"${N:-${V}y}", v, "xy"},
      {"${V?}", empty, ""},
      {"${V:?}", none, "V: is not allowed to be unset", true},
      {"${V:?}", empty, "V: is not allowed to be empty", true},
      {"${V?oops}", none, "V: oops", true},
      {"${V#*/}", path, "b/c"},
      {"${V##*/}", path, "c"},
      {"${V%/*}", path, "a/b"},
      {"${V%%/*}", path, "a"},
      {"${V#x}", path, "a/b/c"},
      {"${V#}", path, "a/b/c"},
      {"${V/b/X}", Env{{"V", "a/b/b"}}, "a/X/b"},
      {"${V//b/X}", Env{{"V", "a/b/b"}}, "a/X/X"},
      {"${V/?/X}", Env{{"V", "abc"}}, "Xbc"},
      {"${V//\\*/+}", Env{{"V", "a*b*c"}}, "a+b+c"},
      {"${V/[/X}", Env{{"V", "a[b"}}, "aXb"},
      {"${V/b*/X}", Env{{"V", "abcb"}}, "aX"},
      {"${V//q/X}", Env{{"V", "abc"}}, "abc"},
      {"${V#?}", Env{{"V", "\xC3\xA9" "a"}}, "a"},
      {"${V%\\}}", Env{{"V", "a}"}}, "a"},
      {"'$V'", v, "$V"},
      {"\"$V\"", v, "x"},
      {"\"a\\\"b\"", v, "a\"b"},
      {"\"a\\b\"", v, "a\\b"},
      {"a\\ b", v, "a b"},
      {"\\$V", v, "$V"},
      {"a`$V", v, "a`x"},
      {"${V//a}", path, "syntax error: missing '/' in ${}", true},
      {"${V/a/b", path, "syntax error: missing '}'", true},
      {"${V", v, "syntax error: missing '}'", true},
      {"${", v, "syntax error: missing '}'", true},
      {"${}", v, "syntax error: bad substitution", true},
      {"${:a}", v, "syntax error: bad substitution", true},
      {"${V!}", v, "unsupported modifier (!) in substitution", true},
      {"${V:x}", v, "unsupported modifier (:x) in substitution", true},
      {"${V#\\a}", v, "invalid pattern (\\a) in substitution: invalid escape '\\a'", true},
      {"'abc", v, "unexpected end of statement while looking for matching single-quote", true},
      {"\"abc", v, "unexpected end of statement while looking for matching double-quote", true},
  };
  for (const auto& c : cases) {
    DYNAMIC_SECTION(c.word) {
      auto r = process_word(c.word, c.env);
      if (c.fails) {
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().message == c.expected);
      } else {
        INFO((r.ok() ? std::string() : r.error().message));
        REQUIRE(r.ok());
        CHECK(r->text == c.expected);
      }
    }
  }
}

TEST_CASE("shell: a backtick escape makes the backslash an ordinary character") {
  Env v{{"V", "x"}};
  auto r = process_word("a\\$V `$V \"`\"\"", v, backtick());
  REQUIRE(r.ok());
  CHECK(r->text == "a\\x $V \"");
}

TEST_CASE("shell: words split on unquoted whitespace, after expansion") {
  Env env{{"V", "x  y"}};
  auto r = process_word("a $V 'c d' \"\" e\\ f", env);
  REQUIRE(r.ok());
  CHECK(r->words == std::vector<std::string>{"a", "x", "y", "c d", "e f"});
}

TEST_CASE("shell: unset variables are reported") {
  Env env{{"A", "1"}};
  auto r = process_word("${A}${B:-x}$C${D/a/b}", env);
  REQUIRE(r.ok());
  CHECK(r->text == "1x");
  CHECK(r->unset == std::set<std::string>{"B", "C", "D"});
}

TEST_CASE("shell: raw mode keeps quotes, escapes and unset references as written") {
  LexOptions raw;
  raw.raw_quotes = true;
  raw.raw_escapes = true;
  raw.skip_unset = true;
  auto r = process_word("RUN <<\"EOF\" \\$X ${Y:-z} 'a b'", {}, raw);
  REQUIRE(r.ok());
  CHECK(r->text == "RUN <<\"EOF\" \\$X ${Y:-z} 'a b'");
  CHECK(r->words == std::vector<std::string>{"RUN", "<<\"EOF\"", "\\$X", "${Y:-z}", "'a b'"});
}

TEST_CASE("shell: pattern operations stay fast on long values") {
  Env env{{"V", std::string(60000, 'a')}};
  for (const char* word : {"${V//a*b/x}", "${V%%a*b}", "${V##*b}", "${V%a*b}", "${V/*b/x}"}) {
    auto r = process_word(word, env);
    REQUIRE(r.ok());
    CHECK(r->text.size() == 60000);
  }
}
