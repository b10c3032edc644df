/* cppcheck.h -- what Check's test macros mean, for cppcheck, which does not
 * read system headers such as <check.h>. Used by "make lint" only. */
#define START_TEST(name) static void name(int _i)
#define END_TEST
