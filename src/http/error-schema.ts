import { Type } from 'typebox'

/** The body of every error answer; the OpenAPI document refers to it as `Error`. */
export const ErrorSchema = Type.Object({
  statusCode: Type.Integer({ description: 'The HTTP status, repeated.' }),
  code: Type.String({ description: 'A stable TSHM_* code; match on this, not on the message.' }),
  error: Type.String({ description: 'The HTTP reason phrase.' }),
  message: Type.String({ description: 'What went wrong, naming the field at fault.' })
}, { $id: 'Error', title: 'Error' })
