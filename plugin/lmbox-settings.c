/*
 * lmbox-settings.c: the lmbox_* settings on Dovecot 2.3 and 2.4.
 *
 * 2.3: plugin { lmbox_* = ... } (or userdb fields), read with
 *      mail_user_plugin_getenv().
 * 2.4: every key must be known to the config process, so the settings are
 *      a setting_parser_info ("lmbox", with an lmbox { } filter and the
 *      driver's defaults: mail_path = %{home}/lmbox, mailboxes/ as the
 *      mailbox root directory).  This file is compiled twice: into the
 *      plugin, and with -DLMBOX_SETTINGS_MODULE into the settings module
 *      lib20_lmbox_settings.so that the config process loads from
 *      $(dovecot_moduledir)/settings.  Both see the same defines.
 *
 * All values are strings; the plugin and the pop3 module parse them, so a
 * bad value gets the same error on both versions.
 */
#include "lib.h"
#include "lmbox-compat.h"

#if LMBOX_DOVECOT24
#include "settings.h"
#include "settings-parser.h"
#include "mail-user.h"

struct lmbox_settings {
	pool_t pool;
#define LMBOX_SETTING(name) const char *name;
	LMBOX_SETTING_NAMES
#undef LMBOX_SETTING
};

static const struct setting_define lmbox_setting_defines[] = {
	{ .type = SET_FILTER_NAME, .key = "lmbox" },
#define LMBOX_SETTING(name) \
	SETTING_DEFINE_STRUCT_STR(#name, name, struct lmbox_settings),
	LMBOX_SETTING_NAMES
#undef LMBOX_SETTING
	SETTING_DEFINE_LIST_END
};

static const struct lmbox_settings lmbox_default_settings = {
#define LMBOX_SETTING(name) .name = "",
	LMBOX_SETTING_NAMES
#undef LMBOX_SETTING
};

static const struct setting_keyvalue lmbox_default_settings_keyvalue[] = {
	{ "lmbox/mail_path", "%{home}/lmbox" },
	{ "lmbox/mailbox_root_directory_name", "mailboxes" },
	{ "lmbox/mailbox_subscriptions_filename", "subscriptions" },
	{ NULL, NULL }
};

const struct setting_parser_info lmbox_setting_parser_info = {
	.name = "lmbox",

	.defines = lmbox_setting_defines,
	.defaults = &lmbox_default_settings,
	.default_settings = lmbox_default_settings_keyvalue,

	.struct_size = sizeof(struct lmbox_settings),
	.pool_offset1 = 1 + offsetof(struct lmbox_settings, pool),
};

#ifdef LMBOX_SETTINGS_MODULE
/* what the config process looks up in lib20_lmbox_settings.so */
extern const struct setting_parser_info *lmbox_settings_set_infos[];
const struct setting_parser_info *lmbox_settings_set_infos[] = {
	&lmbox_setting_parser_info,
	NULL
};
extern const char *lmbox_settings_version;
const char *lmbox_settings_version = DOVECOT_ABI_VERSION;
#else
const char *lmbox_setting_str(struct mail_user *user, struct event *event,
			      const char *name)
{
	const struct lmbox_settings *set;
	const struct setting_define *def;
	const char *error, *value = NULL;

	if (event == NULL)
		event = user->event;
	if (settings_get(event, &lmbox_setting_parser_info, 0,
			 &set, &error) < 0) {
		e_error(event, "lmbox: %s", error);
		return NULL;
	}
	for (def = lmbox_setting_defines; def->key != NULL; def++) {
		if (def->type == SET_STR && strcmp(def->key, name) == 0) {
			value = t_strdup(*(const char *const *)
					 CONST_PTR_OFFSET(set, def->offset));
			break;
		}
	}
	settings_free(set);
	i_assert(def->key != NULL); /* only names in LMBOX_SETTING_NAMES */
	return value;
}
#endif

#else /* Dovecot 2.3 */
#include "mail-user.h"

const char *lmbox_setting_str(struct mail_user *user,
			      struct event *event ATTR_UNUSED,
			      const char *name)
{
	return mail_user_plugin_getenv(user, name);
}
#endif
