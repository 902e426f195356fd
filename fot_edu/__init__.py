"""fot_edu"""
