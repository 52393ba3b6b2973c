#ifndef LMBOX_COMPAT_H
#define LMBOX_COMPAT_H
/*
 * lmbox-compat.h: the one place where Dovecot 2.3 and 2.4 differ for the
 * lmbox plugin and the pop3_lmbox module (docs/dovecot24.md).  Include it
 * after "lib.h".  storage/ (liblmbox) knows nothing of Dovecot.
 *
 *   LMBOX_DOVECOT24            1 when building against Dovecot 2.4.x
 *   lmbox_setting_str()        an lmbox_* setting as a string, "" or NULL
 *                              when unset: plugin { } on 2.3, top-level keys
 *                              or an lmbox { } filter on 2.4
 *   LMBOX_STORAGE_CLASS_V23    storage vfuncs that exist only on 2.3
 *   LMBOX_STORAGE_CLASS_SET    .set_info of the storage class (2.4 only)
 *   LMBOX_MAIL_PATH_HINT       how an admin sets the mail root
 *   lmbox_parse_size()         "64M" -> bytes (settings_get_size on 2.3,
 *                              str_parse_get_size on 2.4)
 *   lmbox_parse_interval()     "10 mins" -> seconds
 */
#ifndef DOVECOT_PREREQ
#  error "include lib.h before lmbox-compat.h"
#endif

#if DOVECOT_PREREQ(2, 4, 0)
#  define LMBOX_DOVECOT24 1
#else
#  define LMBOX_DOVECOT24 0
#endif

struct mail_user;
struct event;

/* Every lmbox_* setting, on both versions.  Values are the admin's strings;
   the caller parses and validates them (the same errors on 2.3 and 2.4). */
#define LMBOX_SETTING_NAMES \
	LMBOX_SETTING(lmbox_compress_level) \
	LMBOX_SETTING(lmbox_max_readers) \
	LMBOX_SETTING(lmbox_map_initial) \
	LMBOX_SETTING(lmbox_map_max) \
	LMBOX_SETTING(lmbox_segment_max) \
	LMBOX_SETTING(lmbox_log_body_opens) \
	LMBOX_SETTING(lmbox_pop3_login_delay) \
	LMBOX_SETTING(lmbox_pop3_expire) \
	LMBOX_SETTING(lmbox_pop3_test_clock_file)

/* The value of the lmbox_* setting NAME for USER, allocated from the data
   stack; NULL or "" when unset.  EVENT is the settings event to look it up
   with on 2.4 (a storage's event sees the lmbox { } filter; NULL means
   user->event); 2.3 ignores it. */
const char *lmbox_setting_str(struct mail_user *user, struct event *event,
			      const char *name);

#if LMBOX_DOVECOT24
#  include "str-parse.h"
#  define lmbox_parse_size(str, bytes_r, error_r) \
	str_parse_get_size(str, bytes_r, error_r)
#  define lmbox_parse_interval(str, secs_r, error_r) \
	str_parse_get_interval(str, secs_r, error_r)
extern const struct setting_parser_info lmbox_setting_parser_info;
#  define LMBOX_STORAGE_CLASS_SET .set_info = &lmbox_setting_parser_info,
#  define LMBOX_MAIL_PATH_HINT "mail_driver = lmbox, mail_path = ~/lmbox"
#else
#  include "settings-parser.h"
#  define lmbox_parse_size(str, bytes_r, error_r) \
	settings_get_size(str, bytes_r, error_r)
#  define lmbox_parse_interval(str, secs_r, error_r) \
	settings_get_time(str, secs_r, error_r)
#  define LMBOX_STORAGE_CLASS_SET
#  define LMBOX_MAIL_PATH_HINT "mail_location = lmbox:~/lmbox"
#endif

#endif
