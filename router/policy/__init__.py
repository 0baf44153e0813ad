"""Tool governance: what a role's agents may call, checked on the request and on the response.

Pure: functions take facts and return decisions; they do no I/O.
"""
