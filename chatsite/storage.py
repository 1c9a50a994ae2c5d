"""Static files under content-hashed names, cached for a year.

Django's manifest storage rewrites the ES modules' `import ... from "./x.js"`
to the hashed names as well, so a page after a deploy loads one consistent
set of modules: never a new room.js importing an old connection.js from a
cache. WhiteNoise adds compressed copies and serves hashed names immutable.
"""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class HashedStaticFiles(CompressedManifestStaticFilesStorage):
    support_js_module_import_aggregation = True
