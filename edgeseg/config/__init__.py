"""Every stream, alarm, zone, sink and server setting, declared once (pydantic), with the
docs table made from the declarations. Sits above the pieces whose settings it declares
(sinks register their own) and below everything that reads a config."""
